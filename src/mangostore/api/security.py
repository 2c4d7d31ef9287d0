"""Who is calling and what they may do: bearer session tokens, rate limits, permissions.

Every route but health and login takes a :class:`Caller`, made by
:meth:`ApiContext.caller` from the ``Authorization: Bearer <token>`` header through
``db.sessions.validate`` (which audits refused tokens), then counted against the
session's rate limit. Routes then ask :meth:`ApiContext.allow`, which is
``db.access.require``: a denial raises ``PermissionDenied`` (answered 403) and is
written to the audit log by the permission service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from mangostore import Database
from mangostore.api.problems import ApiProblem
from mangostore.api.settings import ApiSettings
from mangostore.records import User, UserSession
from mangostore.sync.server.limits import RateLimiter, retry_after

__all__ = ["ApiContext", "Caller"]


@dataclass(frozen=True, slots=True)
class Caller:
    """The user and session of a request; ``repr`` never shows the token."""

    user: User
    session: UserSession
    token: str = field(repr=False)

    @property
    def user_id(self) -> str:
        """The caller's user id."""
        return self.user.id


class ApiContext:
    """What every route module needs: the database, the limits and the checks."""

    def __init__(self, db: Database, settings: ApiSettings) -> None:
        self.db = db
        self.settings = settings
        seconds: Callable[[], float] = lambda: db.clock.now_ms() / 1000  # noqa: E731
        self._sessions = RateLimiter(settings.session_rate, settings.session_burst, now=seconds)
        self._logins = RateLimiter(settings.login_rate, settings.login_burst, now=seconds)

    def caller(self, request: Request) -> Caller:
        """The dependency of authenticated routes: the session of the bearer token.

        Raises:
            ApiProblem: no bearer token (401), or the session's rate is spent (429).
            AuthenticationError: the token is malformed, unknown, expired or revoked.
        """
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiProblem(
                401,
                "unauthenticated",
                "Not authenticated",
                "send 'Authorization: Bearer <token>' with a session token from POST /v1/login",
                headers={"WWW-Authenticate": 'Bearer realm="mangostore"'},
            )
        user, session = self.db.sessions.validate(token)
        self._spend(self._sessions, session.id)
        return Caller(user, session, token)

    def limit_login(self, request: Request) -> None:
        """Count a login attempt against its client address's rate.

        Raises:
            ApiProblem: too many attempts from this address (429).
        """
        self._spend(self._logins, request.client.host if request.client else "unknown")

    def allow(
        self,
        caller: Caller,
        resource_type: str,
        resource_id: str,
        permission: str,
        *,
        project_id: str | None = None,
    ) -> None:
        """Require ``permission`` on the resource for the caller (``db.access.require``),
        with the session's security level (and the project, if any) as context.

        Raises:
            PermissionDenied: the caller may not; the denial is audited.
        """
        context: dict[str, Any] = {"security_level": caller.session.security_level}
        if project_id is not None:
            context["project_id"] = project_id
        self.db.access.require(
            caller.user_id, resource_type, resource_id, permission, context=context
        )

    @staticmethod
    def _spend(limiter: RateLimiter, key: str) -> None:
        wait = limiter.take(key)
        if wait:
            raise ApiProblem(
                429,
                "rate-limited",
                "Too many requests",
                f"too many requests; wait {retry_after(wait)} s and try again",
                headers={"Retry-After": retry_after(wait)},
            )
