"""The local HTTP API: ``create_app(db, settings)``, a FastAPI app over one database.

Served by ``mangostore serve`` on loopback or a unix socket (docs/api.md). Every route
but health and login needs a bearer session token (:mod:`mangostore.api.security`)
and a permission from ``db.access``; errors are RFC 9457 problem details
(:mod:`mangostore.api.problems`); bodies are limited in size and sessions in rate.
The OpenAPI document is at ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

import mangostore
from mangostore import Database
from mangostore.api.problems import (
    PROBLEM_RESPONSES,
    ApiProblem,
    ProblemBodyLimit,
    install_problem_handlers,
    problem_response,
)
from mangostore.api.routes_admin import admin_routes
from mangostore.api.routes_ai import ai_routes
from mangostore.api.routes_core import core_routes
from mangostore.api.routes_notify import notify_routes
from mangostore.api.security import ApiContext
from mangostore.api.settings import ApiSettings

__all__ = ["create_app"]


def create_app(db: Database, settings: ApiSettings | None = None) -> FastAPI:
    """The API's ASGI app over ``db`` (which the caller opens and closes)."""
    ctx = ApiContext(db, settings or ApiSettings())
    app = FastAPI(
        title="mangostore",
        description="The local API of a mangostore database: the caller's projects, "
        "terminal sessions, command history, notifications, AI memory, conversations and "
        "knowledge graph, behind session tokens and permissions.",
        version=mangostore.__version__,
    )
    app.state.db = db
    install_problem_handlers(app, db.clock.now_ms)
    for router in (admin_routes(ctx), core_routes(ctx), notify_routes(ctx), ai_routes(ctx)):
        app.include_router(router, responses=PROBLEM_RESPONSES)
    allowed = ctx.settings.allowed_hosts
    if allowed is not None:

        @app.middleware("http")
        async def known_host(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            if request.headers.get("host", "") not in allowed:
                refusal = ApiProblem(
                    421,
                    "unknown-host",
                    "Misdirected request",
                    "this server answers requests for "
                    + ", ".join(allowed)
                    + " only: connect to it by one of those names",
                )
                return problem_response(request, refusal)
            return await call_next(request)

    app.add_middleware(ProblemBodyLimit, max_bytes=ctx.settings.max_body_bytes)
    return app
