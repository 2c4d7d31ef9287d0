"""``mangostore user`` and ``mangostore sessions``: passwords, lock-outs and sessions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

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
from mangostore.records import UserSession

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
    """Manage the passwords of a database's users."""


@user.command("add")
@existing_database
@click.argument("username")
@click.option("--email", help="The user's e-mail address.")
@_password_file_option
@plain_option
@key_file_option
def add_user(
    path: Path,
    username: str,
    email: str | None,
    password_file: Path | None,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Create USERNAME with a password in the database at PATH.

    The password is asked for twice at a hidden prompt, or read from --password-file.
    """
    with open_for(path, plain=plain, key_file=key_file, feature=USERS) as db:
        password = _new_password(password_file, username)
        created = db.auth.create_user_with_password(username, password, email=email)
    console().print(f"Created user {username} ({created.id}).")


@user.command("passwd")
@existing_database
@click.argument("username")
@_password_file_option
@plain_option
@key_file_option
def set_user_password(
    path: Path, username: str, password_file: Path | None, plain: bool, key_file: Path | None
) -> None:
    """Set a new password for USERNAME; every session of the user is revoked."""
    with open_for(path, plain=plain, key_file=key_file, feature=USERS) as db:
        user_id = resolve_user(db, username)
        password = _new_password(password_file, username)
        revoked = db.auth.set_password(user_id, password)
    console().print(f"Password of {username} changed; {revoked} session(s) revoked.")


@user.command("unlock")
@existing_database
@click.argument("username")
@plain_option
@key_file_option
def unlock_user(path: Path, username: str, plain: bool, key_file: Path | None) -> None:
    """Clear the failed logins and the lock of USERNAME."""
    with open_for(path, plain=plain, key_file=key_file, feature=USERS) as db:
        cleared = db.auth.unlock(username)
    console().print(
        f"Unlocked {username}." if cleared else f"{username} had no failed logins to clear."
    )


@click.group()
def sessions() -> None:
    """List and revoke login sessions."""


@sessions.command("list")
@existing_database
@click.option("--user", "username", required=True, help="The user: a user name or a user id.")
@click.option("--json", "as_json", is_flag=True, help="Print the sessions as JSON.")
@plain_option
@key_file_option
def list_sessions(
    path: Path, username: str, as_json: bool, plain: bool, key_file: Path | None
) -> None:
    """List the live sessions of --user in the database at PATH, newest first."""
    with open_for(path, plain=plain, key_file=key_file, feature=USERS) as db:
        rows = [_summary(s) for s in db.sessions.active(resolve_user(db, username))]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    out = console()
    if not rows:
        out.print(f"No live sessions for {username}.")
        return
    for row in rows:
        where = ", ".join(str(row[k]) for k in ("ip_address", "user_agent") if row[k])
        out.print(
            f"{row['id']}  {row['security_level']}, since {row['created']} UTC, "
            f"last active {row['last_activity']} UTC, expires {row['expires']} UTC"
            + (f", {where}" if where else ""),
            soft_wrap=True,
        )


@sessions.command("revoke")
@existing_database
@click.option("--user", "username", help="Revoke every session of this user (name or id).")
@click.option("--session", "session_id", help="Revoke this one session (its id).")
@plain_option
@key_file_option
def revoke_sessions(
    path: Path,
    username: str | None,
    session_id: str | None,
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
        "created": utc_text(session.created_at),
        "last_activity": utc_text(session.last_activity),
        "expires": utc_text(session.expires_at),
        "ip_address": session.ip_address,
        "user_agent": session.user_agent,
        "device_info": session.device_info,
    }
