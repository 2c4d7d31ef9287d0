"""``mangostore notify``: list, send and read notifications in a database file."""

from __future__ import annotations

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
from mangostore.cli.output import emit_json, iso_time, json_option
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
@json_option
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
    if as_json:
        emit_json([_summary(n, names) for n in found])
        return
    out = console()
    if not found:
        out.print(f"No {'unread ' if unread else ''}notifications for {user}.")
        return
    # Two lines each rather than a table: ids stay whole (they are what `notify read`
    # takes) and messages keep their width on a narrow terminal.
    for n in found:
        row = _summary(n, names)
        out.print(
            Text(
                f"{row['id']}  {utc_text(n.created_at, '')} UTC  {row['status']}  "
                f"{row['priority']}  {row['type']}"
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
@json_option
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
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Send a notification of --type to --user in the database at PATH.

    Parameter values are plain text: braces in them are kept as they are. Delivery
    to the log happens at once; desktop and voice deliveries stay pending until the
    application (which has a deliverer for them) delivers them.
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
        names = {r[0]: r[1] for r in db.query("SELECT id, name FROM notification_types")}
    delivered = [s.method for s in states if s.status == "delivered"]
    waiting = [s.method for s in states if s.status in ("pending", "failed")]
    if as_json:
        emit_json(
            {
                **_summary(sent, names),
                "scheduled": iso_time(sent.scheduled_at),
                "delivered_by": delivered,
                "waiting_for_application": waiting,
            }
        )
        return
    out = console()
    out.print(f"Sent notification {sent.id} ({sent.priority}): {sent.status}.")
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
@json_option
@plain_option
@key_file_option
def read(
    path: Path, ids: tuple[str, ...], as_json: bool, plain: bool, key_file: Path | None
) -> None:
    """Mark the notifications IDS of the database at PATH read: all of them, or none.

    Ids already read are left as they are and reported; that is not an error.
    """
    with open_for(path, plain=plain, key_file=key_file, feature=NOTIFICATIONS) as db:
        unique = list(dict.fromkeys(ids))
        # One transaction: what was already read cannot change before the rest is marked.
        with db.transaction():
            # An unknown id raises NotFoundError here: nothing is marked.
            already = [i for i in unique if db.notifications.get(i).status == "read"]
            rest = [i for i in unique if i not in already]
            done = db.notify.mark_read(rest) if rest else []
    if as_json:
        emit_json({"marked_read": [n.id for n in done], "already_read": already})
        return
    out = console()
    if done or not already:
        out.print(f"Marked {len(done)} notification{'s' if len(done) != 1 else ''} read.")
    for notification_id in already:
        out.print(f"{notification_id} was already read.")


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
        "created": iso_time(n.created_at),
        "status": n.status,
        "priority": n.priority,
        "type": type_names.get(n.notification_type_id, n.notification_type_id),
        "project_id": n.project_id,
        "title": n.title,
        "message": n.message,
        "delivery_methods": n.delivery_methods,
    }
