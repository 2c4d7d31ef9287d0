"""Routes of the account and the terminal: login, the caller's own user, projects,
terminal sessions and command history."""

# Annotations are evaluated at once (no ``from __future__ import annotations``): FastAPI
# reads the route signatures, whose dependencies are local to the factory.
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from mangostore.api.pagination import in_order, page_ids
from mangostore.api.security import ApiContext, Caller
from mangostore.api.shapes import as_json, etagged, page
from mangostore.errors import NotFoundError

__all__ = ["core_routes"]

Id = Annotated[str, Path(min_length=1, max_length=64)]
Text = Annotated[str, Field(min_length=1, max_length=4096)]
ShortText = Annotated[str, Field(max_length=1024)]


class LoginBody(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=256)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class ProjectBody(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=1024)]
    path: Annotated[str, Field(min_length=1, max_length=4096)]
    display_name: ShortText | None = None
    type: ShortText | None = None
    status: ShortText | None = None
    metadata: dict[str, Any] | None = None
    git_config: dict[str, Any] | None = None
    security_config: dict[str, Any] | None = None


class ProjectPatch(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    display_name: ShortText | None = None
    type: ShortText | None = None
    status: ShortText | None = None
    metadata: dict[str, Any] | None = None
    git_config: dict[str, Any] | None = None
    security_config: dict[str, Any] | None = None


class TerminalBody(BaseModel):
    project_id: ShortText | None = None
    name: ShortText | None = None
    working_directory: Annotated[str, Field(max_length=4096)] | None = None
    environment_variables: dict[str, Any] | None = None
    session_data: dict[str, Any] | None = None
    tmux_session_id: ShortText | None = None


class CommandBody(BaseModel):
    command: Annotated[str, Field(min_length=1, max_length=65536)]
    command_type: Literal["voice", "keyboard", "ai"] | None = None
    project_id: ShortText | None = None
    terminal_session_id: ShortText | None = None
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    execution_time: int | None = Field(default=None, ge=0, le=2**62)
    output: Annotated[str, Field(max_length=1_000_000)] | None = None
    working_directory: Annotated[str, Field(max_length=4096)] | None = None
    voice_confidence: float | None = Field(default=None, ge=0, le=1)
    ai_suggested: bool | None = None


def core_routes(ctx: ApiContext) -> APIRouter:
    """The routes of the account, projects, terminal sessions and command history."""
    db = ctx.db
    router = APIRouter()
    CallerDep = Annotated[Caller, Depends(ctx.caller)]
    Limit = Annotated[int, Query(ge=1, le=ctx.settings.max_page_size)]
    Cursor = Annotated[str | None, Query(max_length=128)]
    default_limit = ctx.settings.page_size

    def owned(record: Any, caller: Caller, table: str) -> Any:
        # Another user's row is answered as a missing one: its existence is not told.
        if record.user_id != caller.user_id:
            raise NotFoundError(f"no {table} record has id {record.id!r}")
        return record

    # -- the account ----------------------------------------------------------------------

    @router.post("/v1/login", tags=["account"], dependencies=[Depends(ctx.limit_login)])
    def login(body: LoginBody, request: Request) -> dict[str, Any]:
        """Log in with a user name and password; the answer's ``token`` is the bearer
        token of every other route (shown once, never stored)."""
        result = db.auth.login(
            body.username,
            body.password,
            ip_address=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
        )
        return {
            "token": result.token,
            "user_id": result.user.id,
            "session_id": result.session.id,
            "security_level": result.session.security_level,
            "expires_at": result.session.expires_at,
        }

    @router.post("/v1/logout", status_code=204, tags=["account"])
    def logout(caller: CallerDep) -> Response:
        """End the session of the bearer token."""
        db.auth.logout(caller.token)
        return Response(status_code=204)

    @router.get("/v1/me", tags=["account"])
    def me(caller: CallerDep, request: Request) -> Response:
        """The caller's own user record and session (a valid session is all it needs)."""
        return etagged(
            request,
            {
                "user": caller.user,
                "session": {
                    "id": caller.session.id,
                    "security_level": caller.session.security_level,
                    "expires_at": caller.session.expires_at,
                    "created_at": caller.session.created_at,
                },
            },
        )

    # -- projects -------------------------------------------------------------------------

    @router.get("/v1/projects", tags=["projects"])
    def list_projects(
        caller: CallerDep,
        cursor: Cursor = None,
        limit: Limit = default_limit,
        status: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        """The caller's projects, newest first."""
        ctx.allow(caller, "project", caller.user_id, "read")
        ids, after = page_ids(db, "projects", caller.user_id, cursor, limit, {"status": status})
        return page(in_order(db.projects.list(id=ids), ids), after)

    @router.post("/v1/projects", status_code=201, tags=["projects"])
    def create_project(caller: CallerDep, body: ProjectBody) -> dict[str, Any]:
        """Create a project of the caller's."""
        ctx.allow(caller, "project", caller.user_id, "write")
        fields = body.model_dump(exclude_none=True)
        return as_json(db.projects.create(user_id=caller.user_id, **fields))  # type: ignore[no-any-return]

    @router.get("/v1/projects/{project_id}", tags=["projects"])
    def get_project(caller: CallerDep, project_id: Id, request: Request) -> Response:
        """One project (with an ETag)."""
        ctx.allow(caller, "project", project_id, "read", project_id=project_id)
        return etagged(request, owned(db.projects.get(project_id), caller, "projects"))

    @router.patch("/v1/projects/{project_id}", tags=["projects"])
    def update_project(caller: CallerDep, project_id: Id, body: ProjectPatch) -> dict[str, Any]:
        """Change a project's fields; those left out keep their value."""
        ctx.allow(caller, "project", project_id, "write", project_id=project_id)
        owned(db.projects.get(project_id), caller, "projects")
        fields = body.model_dump(exclude_unset=True)
        if not fields:
            return as_json(db.projects.get(project_id))  # type: ignore[no-any-return]
        return as_json(db.projects.update(project_id, **fields))  # type: ignore[no-any-return]

    @router.delete("/v1/projects/{project_id}", status_code=204, tags=["projects"])
    def delete_project(caller: CallerDep, project_id: Id) -> Response:
        """Delete a project."""
        ctx.allow(caller, "project", project_id, "write", project_id=project_id)
        owned(db.projects.get(project_id), caller, "projects")
        db.projects.delete(project_id)
        return Response(status_code=204)

    # -- terminal sessions ----------------------------------------------------------------

    @router.get("/v1/terminal-sessions", tags=["terminal"])
    def list_terminals(
        caller: CallerDep,
        cursor: Cursor = None,
        limit: Limit = default_limit,
        status: Annotated[Literal["active", "closed"] | None, Query()] = None,
        project_id: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        """The caller's terminal sessions, newest first."""
        ctx.allow(caller, "terminal", caller.user_id, "read")
        ids, after = page_ids(
            db,
            "terminal_sessions",
            caller.user_id,
            cursor,
            limit,
            {"status": status, "project_id": project_id},
        )
        return page(in_order(db.terminal_sessions.list(id=ids), ids), after)

    @router.post("/v1/terminal-sessions", status_code=201, tags=["terminal"])
    def open_terminal(caller: CallerDep, body: TerminalBody) -> dict[str, Any]:
        """Open a terminal session (status ``active``)."""
        ctx.allow(caller, "terminal", caller.user_id, "write", project_id=body.project_id)
        fields = body.model_dump(exclude_none=True)
        return as_json(db.terminal_sessions.open(caller.user_id, **fields))  # type: ignore[no-any-return]

    @router.get("/v1/terminal-sessions/{session_id}", tags=["terminal"])
    def get_terminal(caller: CallerDep, session_id: Id, request: Request) -> Response:
        """One terminal session (with an ETag)."""
        ctx.allow(caller, "terminal", session_id, "read")
        record = owned(db.terminal_sessions.get(session_id), caller, "terminal_sessions")
        return etagged(request, record)

    @router.post("/v1/terminal-sessions/{session_id}/close", tags=["terminal"])
    def close_terminal(caller: CallerDep, session_id: Id) -> dict[str, Any]:
        """Close a terminal session (closing a closed one changes nothing)."""
        ctx.allow(caller, "terminal", session_id, "write")
        owned(db.terminal_sessions.get(session_id), caller, "terminal_sessions")
        return as_json(db.terminal_sessions.close(session_id))  # type: ignore[no-any-return]

    # -- command history ------------------------------------------------------------------

    @router.post("/v1/commands", status_code=201, tags=["commands"])
    def record_command(caller: CallerDep, body: CommandBody) -> dict[str, Any]:
        """Record a command the caller ran."""
        terminal = body.terminal_session_id
        ctx.allow(
            caller, "terminal", terminal or caller.user_id, "write", project_id=body.project_id
        )
        if terminal is not None:
            owned(db.terminal_sessions.get(terminal), caller, "terminal_sessions")
        fields = body.model_dump(exclude_none=True)
        command = fields.pop("command")
        return as_json(db.command_history.record(caller.user_id, command, **fields))  # type: ignore[no-any-return]

    @router.get("/v1/commands", tags=["commands"])
    def list_commands(
        caller: CallerDep,
        cursor: Cursor = None,
        limit: Limit = default_limit,
        project_id: Annotated[str | None, Query(max_length=64)] = None,
        terminal_session_id: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        """The caller's command history, newest first."""
        ctx.allow(caller, "terminal", caller.user_id, "read")
        ids, after = page_ids(
            db,
            "command_history",
            caller.user_id,
            cursor,
            limit,
            {"project_id": project_id, "terminal_session_id": terminal_session_id},
        )
        return page(in_order(db.command_history.list(id=ids), ids), after)

    @router.get("/v1/commands/search", tags=["commands"])
    def search_commands(
        caller: CallerDep,
        q: Annotated[str, Query(min_length=1, max_length=1024)],
        limit: Limit = default_limit,
    ) -> dict[str, Any]:
        """The caller's commands containing ``q`` literally (case-sensitive), newest first."""
        ctx.allow(caller, "terminal", caller.user_id, "read")
        return {"items": as_json(db.command_history.search(caller.user_id, q, limit=limit))}

    @router.get("/v1/commands/stats", tags=["commands"])
    def command_stats(
        caller: CallerDep,
        since: Annotated[int | None, Query(ge=0, le=2**62, description="epoch ms")] = None,
    ) -> dict[str, Any]:
        """How many commands the caller ran, by type and by exit code."""
        ctx.allow(caller, "terminal", caller.user_id, "read")
        stats = db.command_history.stats(caller.user_id, since=since)
        return {
            "total": stats.total,
            "by_type": [{"command_type": k, "count": v} for k, v in stats.by_type.items()],
            "by_exit_code": [{"exit_code": k, "count": v} for k, v in stats.by_exit_code.items()],
            "mean_execution_time": stats.mean_execution_time,
        }

    return router
