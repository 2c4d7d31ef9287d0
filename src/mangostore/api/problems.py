"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error answer of the API has the same shape::

    {"type": "urn:mangostore:problem:not-found", "title": "Not found", "status": 404,
     "detail": "no projects record has id '...'", "instance": "/v1/projects/..."}

with ``field`` added when the library named the offending argument, and ``errors``
(where in the request, and what was wrong) for a request the schema refused. The
error classes of :mod:`mangostore.errors` map onto statuses by :data:`PROBLEMS`,
most specific class first; library messages never hold secrets, so their text is
the ``detail``. An error that is not the library's is answered with a generic 500
and logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from mangostore.errors import (
    AccountLockedError,
    AuthenticationError,
    BatchError,
    ConstraintError,
    DatabaseClosedError,
    DatabaseLockedError,
    DiskFullError,
    InvalidTransitionError,
    MangoError,
    NotFoundError,
    PermissionDenied,
    PoolTimeoutError,
    SessionExpired,
    SessionRevoked,
    TamperedDataError,
    ValidationError,
)
from mangostore.sync.server.limits import BodyLimit

__all__ = [
    "PROBLEMS",
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_RESPONSES",
    "ApiProblem",
    "Problem",
    "ProblemBodyLimit",
    "install_problem_handlers",
    "problem_response",
    "problem_type",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_log = logging.getLogger("mangostore.api")


def problem_type(slug: str) -> str:
    """The ``type`` URI of a problem: ``urn:mangostore:problem:<slug>``."""
    return f"urn:mangostore:problem:{slug}"


class Problem(BaseModel):
    """An RFC 9457 problem details object, as every error answer carries it."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class ProblemKind:
    """How one error class is answered."""

    status: int
    slug: str
    title: str


#: Error classes and their answers; the first class in an error's MRO found here wins.
PROBLEMS: dict[type[MangoError], ProblemKind] = {
    ValidationError: ProblemKind(422, "invalid-input", "The input was refused"),
    BatchError: ProblemKind(422, "invalid-input", "The input was refused"),
    NotFoundError: ProblemKind(404, "not-found", "Not found"),
    ConstraintError: ProblemKind(409, "conflict", "The database refused the write"),
    InvalidTransitionError: ProblemKind(409, "invalid-transition", "Not allowed in this state"),
    AccountLockedError: ProblemKind(429, "account-locked", "Too many failed logins"),
    SessionExpired: ProblemKind(401, "session-expired", "The session has expired"),
    SessionRevoked: ProblemKind(401, "session-revoked", "The session was revoked"),
    AuthenticationError: ProblemKind(401, "unauthenticated", "Not authenticated"),
    PermissionDenied: ProblemKind(403, "forbidden", "Permission denied"),
    DatabaseLockedError: ProblemKind(503, "busy", "The database is busy"),
    PoolTimeoutError: ProblemKind(503, "busy", "The database is busy"),
    DatabaseClosedError: ProblemKind(503, "unavailable", "The database is closed"),
    DiskFullError: ProblemKind(507, "disk-full", "No space left for the database"),
    TamperedDataError: ProblemKind(500, "tampered-data", "Stored data failed authentication"),
    MangoError: ProblemKind(500, "internal", "The request could not be carried out"),
}


class ApiProblem(Exception):
    """An error answer the API raises itself (bad cursor, rate limit, missing token)."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.headers = headers
        self.field = field


def _answer(
    request: Request,
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    field: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body = Problem(
        type=problem_type(slug),
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        field=field,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _kind(exc: MangoError) -> ProblemKind:
    for cls in type(exc).__mro__:
        kind = PROBLEMS.get(cls)
        if kind is not None:
            return kind
    return PROBLEMS[MangoError]


def _headers(exc: MangoError, status: int, now_ms: Callable[[], int]) -> dict[str, str] | None:
    if isinstance(exc, AccountLockedError):
        wait_s = max(1, -(-(exc.locked_until - now_ms()) // 1000))
        return {"Retry-After": str(wait_s)}
    if status == 401:
        return {"WWW-Authenticate": 'Bearer realm="mangostore"'}
    if status == 503:
        return {"Retry-After": "1"}
    return None


def problem_response(request: Request, problem: ApiProblem) -> JSONResponse:
    """``problem`` as the answer to ``request`` (for middleware, which cannot raise)."""
    return _answer(
        request,
        problem.status,
        problem.slug,
        problem.title,
        problem.detail,
        headers=problem.headers,
        field=problem.field,
    )


def install_problem_handlers(app: FastAPI, now_ms: Callable[[], int]) -> None:
    """Answer every error raised by a route of ``app`` as problem details.

    ``now_ms`` is the clock the lock-out's ``Retry-After`` is computed with.
    """

    async def api_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiProblem)
        return problem_response(request, exc)

    async def library_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MangoError)
        kind = _kind(exc)
        if kind.status >= 500:
            # Library messages hold no secrets; the class says what kind of failure.
            _log.warning("request %s failed: %s", request.url.path, type(exc).__name__)
        detail = " ".join(str(exc).split()) or kind.title
        return _answer(
            request,
            kind.status,
            kind.slug,
            kind.title,
            detail,
            headers=_headers(exc, kind.status, now_ms),
            field=getattr(exc, "field", None),
        )

    async def malformed(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # Where and what only: the input itself is the caller's data and is not echoed.
        errors = [
            {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "malformed"}
        where = ".".join(first["loc"])
        return _answer(
            request,
            422,
            "malformed-request",
            "The request does not match the API's schema",
            f"malformed request at {where}: {first['msg']}; see /openapi.json",
            errors=errors,
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        slug, title, detail = {
            404: ("no-such-route", "No such route", "no such route: see /openapi.json"),
            405: ("method-not-allowed", "Method not allowed", "this route takes other methods"),
        }.get(exc.status_code, ("refused", "Refused", str(exc.detail)))
        if exc.status_code == 400:
            slug, title = "malformed-request", "The request does not match the API's schema"
        return _answer(
            request, exc.status_code, slug, title, detail, headers=getattr(exc, "headers", None)
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.error("request %s failed unexpectedly", request.url.path, exc_info=exc)
        return _answer(
            request,
            500,
            "internal",
            "The request could not be carried out",
            "an unexpected error happened; the server's log has the details",
        )

    app.add_exception_handler(ApiProblem, api_problem)
    app.add_exception_handler(MangoError, library_error)
    app.add_exception_handler(RequestValidationError, malformed)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


#: The error answers every route may give, for the OpenAPI document.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": description,
        "model": Problem,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for status, description in (
        (401, "No valid session token"),
        (403, "Permission denied"),
        (404, "Not found"),
        (409, "Conflict with the stored state"),
        (413, "Request body too large"),
        (422, "Input refused"),
        (429, "Too many requests"),
        (503, "The database is busy"),
    )
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class ProblemBodyLimit:
    """The sync server's :class:`~mangostore.sync.server.limits.BodyLimit` (bodies are
    counted as they arrive, chunked ones included), its 413 answered as problem
    details like every other error of this API."""

    def __init__(self, app: App, max_bytes: int) -> None:
        self.limit = BodyLimit(app, max_bytes)
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; rewrite the limit's own refusal."""
        if scope["type"] != "http":
            await self.limit(scope, receive, send)
            return
        rewriting = False

        async def rewrite(message: Message) -> None:
            nonlocal rewriting
            if message["type"] == "http.response.start" and message["status"] == 413:
                headers = dict(message.get("headers") or [])
                # The limit answers plain JSON; the app's own answers are problem+json.
                rewriting = headers.get(b"content-type") == b"application/json"
                if rewriting:
                    message = {
                        **message,
                        "headers": [
                            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                            (b"connection", b"close"),
                        ],
                    }
            elif message["type"] == "http.response.body" and rewriting:
                message = {**message, "body": self._body(scope)}
            await send(message)

        await self.limit(scope, receive, rewrite)

    def _body(self, scope: Scope) -> bytes:
        return json.dumps(
            {
                "type": problem_type("too-large"),
                "title": "Request body too large",
                "status": 413,
                "detail": f"the request body is over the limit of {self.max_bytes} bytes; "
                "send less at once",
                "instance": scope.get("path", ""),
            }
        ).encode()
