"""``mangostore user`` and ``mangostore sessions``: passwords, lock-outs and sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.text import Text

from mangostore.cli.common import (
    CommandError,
    Feature,
    ask_secret,
    console,
    existing_database,
    key_file_option,
    open_for,
    plain_option,
    read_key_file,
    resolve_user,
    utc_text,
)
from mangostore.cli.output import emit_json, iso_time, json_option
from mangostore.records import User, UserSession

#: The schema version that brought credentials, session verifiers and deny records.
AUTH_SCHEMA_VERSION = 11


USERS = Feature("users and sessions", AUTH_SCHEMA_VERSION)


def _password_file_option(func: Any) -> Any:
    return click.option(
        "--password-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Read the user's new password from FILE (one trailing newline is ignored) "
        "instead of asking for it.",
    )(func)


@click.group()
def user() -> None:
    """List a database's users and manage their passwords."""


@user.command("list")
@existing_database
@json_option
@plain_option
@key_file_option
def list_users(path: Path, as_json: bool, plain: bool, key_file: Path | None) -> None:
    """List the users of the database at PATH by name: never a secret.

    Shown: id, user name, e-mail, creation and last login (UTC), and whether the
    user has a password. Encrypted fields, password hashes and sessions are not.
    """
    with open_for(path, plain=plain, key_file=key_file, feature=USERS) as db:
        found = db.users.list(order_by="username")
        rows = [_user_summary(u, db.auth.has_password(u.id)) for u in found]
    if as_json:
        emit_json(rows)
        return
    out = console()
    if not rows:
        out.print("No users.")
        return
    for u, row in zip(found, rows, strict=True):
        email = f" <{u.email}>" if u.email else ""
        login = utc_text(u.last_login)
        out.print(
            Text(
                f"{u.username}{email}  {u.id}  created {utc_text(u.created_at)} UTC, "
                + (f"last login {login} UTC" if login else "never logged in")
                + ("" if row["has_password"] else ", no password")
            ),
            soft_wrap=True,
        )


def _user_summary(u: User, has_password: bool) -> dict[str, Any]:
    return {
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "created": iso_time(u.created_at),
        "last_login": iso_time(u.last_login),
        "has_password": has_password,
    }


@user.command("add")
@existing_database
@click.argument("username")
@click.option("--email", help="The user's e-mail address.")
@_password_file_option
@json_option
@plain_option
@key_file_option
def add_user(
    path: Path,
    username: str,
    email: str | None,
    password_file: Path | None,
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Create USERNAME with a password in the database at PATH.

    The password is asked for twice at a hidden prompt, or read from --password-file.
    """
    with open_for(path, plain=plain, key_file=key_file, feature=USERS) as db:
        password = _new_password(password_file, username)
        created = db.auth.create_user_with_password(username, password, email=email)
    if as_json:
        emit_json(_user_summary(created, True))
        return
    console().print(f"Created user {username} ({created.id}).")


@user.command("passwd")
@existing_database
@click.argument("username")
@_password_file_option
@json_option
@plain_option
@key_file_option
def set_user_password(
    path: Path,
    username: str,
    password_file: Path | None,
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Set a new password for USERNAME; every session of the user is revoked."""
    with open_for(path, plain=plain, key_file=key_file, feature=USERS) as db:
        user_id = resolve_user(db, username)
        password = _new_password(password_file, username)
        revoked = db.auth.set_password(user_id, password)
    if as_json:
        emit_json({"id": user_id, "username": username, "sessions_revoked": revoked})
        return
    console().print(f"Password of {username} changed; {revoked} session(s) revoked.")


@user.command("unlock")
@existing_database
@click.argument("username")
@json_option
@plain_option
@key_file_option
def unlock_user(
    path: Path, username: str, as_json: bool, plain: bool, key_file: Path | None
) -> None:
    """Clear the failed logins and the lock of USERNAME."""
    with open_for(path, plain=plain, key_file=key_file, feature=USERS) as db:
        cleared = db.auth.unlock(username)
    if as_json:
        emit_json({"username": username, "cleared": cleared})
        return
    console().print(
        f"Unlocked {username}." if cleared else f"{username} had no failed logins to clear."
    )


@click.group()
def sessions() -> None:
    """List and revoke login sessions."""


@sessions.command("list")
@existing_database
@click.option("--user", "username", required=True, help="The user: a user name or a user id.")
@json_option
@plain_option
@key_file_option
def list_sessions(
    path: Path, username: str, as_json: bool, plain: bool, key_file: Path | None
) -> None:
    """List the live sessions of --user in the database at PATH, newest first."""
    with open_for(path, plain=plain, key_file=key_file, feature=USERS) as db:
        found = db.sessions.active(resolve_user(db, username))
    if as_json:
        emit_json([_summary(s) for s in found])
        return
    out = console()
    if not found:
        out.print(f"No live sessions for {username}.")
        return
    for session in found:
        where = ", ".join(str(v) for v in (session.ip_address, session.user_agent) if v)
        out.print(
            f"{session.id}  {session.security_level}, since {utc_text(session.created_at)} "
            f"UTC, last active {utc_text(session.last_activity)} UTC, expires "
            f"{utc_text(session.expires_at)} UTC" + (f", {where}" if where else ""),
            soft_wrap=True,
        )


@sessions.command("revoke")
@existing_database
@click.option("--user", "username", help="Revoke every session of this user (name or id).")
@click.option("--session", "session_id", help="Revoke this one session (its id).")
@json_option
@plain_option
@key_file_option
def revoke_sessions(
    path: Path,
    username: str | None,
    session_id: str | None,
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Revoke one session (--session) or every session of a user (--user)."""
    if (username is None) == (session_id is None):
        raise click.UsageError("give exactly one of --user and --session")
    with open_for(path, plain=plain, key_file=key_file, feature=USERS) as db:
        if session_id is not None:
            if not db.sessions.revoke(session_id):
                raise CommandError(f"there is no live session {session_id!r}")
            count = 1
        else:
            assert username is not None
            count = db.sessions.revoke_all(resolve_user(db, username))
    if as_json:
        emit_json({"revoked": count})
        return
    console().print(f"Revoked {count} session(s).")


def _new_password(password_file: Path | None, username: str) -> str:
    if password_file is not None:
        return read_key_file(password_file)
    return ask_secret(
        f"New password for {username}",
        confirm=True,
        missing="no password given: pass --password-file FILE, or run in a terminal to be asked",
    )


def _summary(session: UserSession) -> dict[str, Any]:
    return {
        "id": session.id,
        "security_level": session.security_level,
        "created": iso_time(session.created_at),
        "last_activity": iso_time(session.last_activity),
        "expires": iso_time(session.expires_at),
        "ip_address": session.ip_address,
        "user_agent": session.user_agent,
        "device_info": session.device_info,
    }
