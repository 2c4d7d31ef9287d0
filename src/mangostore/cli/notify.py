"""``mangostore notify``: list, send and read notifications in a database file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from mangostore.cli.common import (
    Feature,
    console,
    existing_database,
    key_file_option,
    open_for,
    plain_option,
    resolve_user,
    utc_text,
)
from mangostore.notify.preferences import PRIORITIES
from mangostore.records import Notification

#: The schema version that brought the delivery table the notification commands need.
NOTIFY_SCHEMA_VERSION = 9


NOTIFICATIONS = Feature("notifications", NOTIFY_SCHEMA_VERSION)


@click.group()
def notify() -> None:
    """List, send and read notifications.

    Sending records the notification and delivers it to the log at once; desktop
    and voice deliveries wait for the application, which delivers them.
    """


@notify.command("list")
@existing_database
@click.option("--user", "user", required=True, help="The user: a user name or a user id.")
@click.option("--unread", is_flag=True, help="Only delivered notifications not read yet.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Most to show."
)
@click.option("--json", "as_json", is_flag=True, help="Print the notifications as JSON.")
@plain_option
@key_file_option
def list_notifications(
    path: Path,
    user: str,
    unread: bool,
    limit: int,
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """List the notifications of --user in the database at PATH, newest first."""
    with open_for(path, plain=plain, key_file=key_file, feature=NOTIFICATIONS) as db:
        user_id = resolve_user(db, user)
        if unread:
            found = db.notify.unread(user_id, limit=limit)
        else:
            found = db.notify.history(user_id, limit=limit)
        names = {r[0]: r[1] for r in db.query("SELECT id, name FROM notification_types")}
    rows = [_summary(n, names) for n in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    out = console()
    if not rows:
        out.print(f"No {'unread ' if unread else ''}notifications for {user}.")
        return
    # Two lines each rather than a table: ids stay whole (they are what `notify read`
    # takes) and messages keep their width on a narrow terminal.
    for row in rows:
        out.print(
            Text(
                f"{row['id']}  {row['created']} UTC  {row['status']}  {row['priority']}  "
                f"{row['type']}"
            ),
            soft_wrap=True,
        )
        out.print(Text(f"    {row['title']}: {row['message']}"), soft_wrap=True)


@notify.command("send")
@existing_database
@click.option("--user", "user", required=True, help="The recipient: a user name or a user id.")
@click.option("--type", "type_name", required=True, help="The notification type's name.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A value for the {KEY} placeholder of the type's template; repeat for each.",
)
@click.option("--project", "project_id", help="The id of the project it is about.")
@click.option("--priority", type=click.Choice(PRIORITIES), help="Default: the type's own priority.")
@click.option("--title", help="Default: the type's name.")
@plain_option
@key_file_option
def send(
    path: Path,
    user: str,
    type_name: str,
    params: tuple[str, ...],
    project_id: str | None,
    priority: str | None,
    title: str | None,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Send a notification of --type to --user in the database at PATH.

    Parameter values are plain text: braces in them are kept as they are.
    """
    values = _parse_params(params)
    with open_for(path, plain=plain, key_file=key_file, feature=NOTIFICATIONS) as db:
        sent = db.notify.send(
            resolve_user(db, user),
            type_name,
            values,
            project_id=project_id,
            priority=priority,
            title=title,
        )
        states = db.notify.deliveries(sent.id)
    out = console()
    out.print(f"Sent notification {sent.id} ({sent.priority}): {sent.status}.")
    delivered = [s.method for s in states if s.status == "delivered"]
    waiting = [s.method for s in states if s.status in ("pending", "failed")]
    if delivered:
        out.print(f"Delivered by: {', '.join(delivered)}.")
    if waiting:
        when = f" until {utc_text(sent.scheduled_at)} UTC" if sent.scheduled_at else ""
        out.print(f"Waiting for the application{when}: {', '.join(waiting)}.")
    if not states:
        out.print("No delivery method applies (see the user's preferences).")


@notify.command("read")
@existing_database
@click.argument("ids", nargs=-1, required=True)
@plain_option
@key_file_option
def read(path: Path, ids: tuple[str, ...], plain: bool, key_file: Path | None) -> None:
    """Mark the notifications IDS of the database at PATH read: all of them, or none."""
    with open_for(path, plain=plain, key_file=key_file, feature=NOTIFICATIONS) as db:
        done = db.notify.mark_read(list(ids))
    console().print(f"Marked {len(done)} notification{'s' if len(done) != 1 else ''} read.")


def _parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--param")
        if key in values:
            raise click.BadParameter(f"{key!r} is given twice", param_hint="--param")
        values[key] = value
    return values


def _summary(n: Notification, type_names: dict[str, str]) -> dict[str, Any]:
    return {
        "id": n.id,
        "created": utc_text(n.created_at, ""),
        "status": n.status,
        "priority": n.priority,
        "type": type_names.get(n.notification_type_id, n.notification_type_id),
        "project_id": n.project_id,
        "title": n.title,
        "message": n.message,
        "delivery_methods": n.delivery_methods,
    }
