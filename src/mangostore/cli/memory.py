"""``mangostore memory``: look at what the assistant remembers about a user."""

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
from mangostore.cli.output import emit_json, iso_time, json_option
from mangostore.kg.memory import MEMORY_TYPES
from mangostore.records import AIMemory

#: The schema version that brought memory history and its full-text index.
MEMORY_SCHEMA_VERSION = 10
#: Longest value shown on a line of the text listing; --json shows values whole.
_VALUE_WIDTH = 80


MEMORY = Feature("memory", MEMORY_SCHEMA_VERSION)


@click.group()
def memory() -> None:
    """Look at the AI memory of a database.

    The application remembers and recalls through db.memory; these commands read.
    """


@memory.command("list")
@existing_database
@click.option("--user", "user", required=True, help="The user: a user name or a user id.")
@click.option(
    "--type", "memory_type", type=click.Choice(MEMORY_TYPES), help="Only memories of this type."
)
@click.option("--project", "project_id", help="Only this project's and the user-wide memories.")
@json_option
@plain_option
@key_file_option
def list_memories(
    path: Path,
    user: str,
    memory_type: str | None,
    project_id: str | None,
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """List the current memories of --user in the database at PATH, by key.

    Superseded, expired and forgotten memories are not shown; listing does not count
    as recalling them.
    """
    with open_for(path, plain=plain, key_file=key_file, feature=MEMORY) as db:
        found = db.memory.list(
            resolve_user(db, user), memory_type=memory_type, project_id=project_id
        )
    if as_json:
        emit_json([_summary(m) for m in found])
        return
    out = console()
    if not found:
        out.print(f"No memories for {user}.")
        return
    for m in found:
        row = _summary(m)
        value = json.dumps(row["value"], ensure_ascii=False)
        if len(value) > _VALUE_WIDTH:
            value = value[: _VALUE_WIDTH - 3] + "..."
        scope = f"project {row['project_id']}" if row["project_id"] else "user-wide"
        expires = f", expires {utc_text(m.expires_at)} UTC" if m.expires_at else ""
        out.print(Text(f"{row['key']} = {value}"), soft_wrap=True)
        out.print(
            Text(
                f"    {row['type']}, confidence {row['confidence']:.2f}, {scope}, "
                f"since {utc_text(m.created_at)} UTC{expires}, recalled "
                f"{row['access_count']}x  {row['id']}"
            ),
            soft_wrap=True,
        )


def _summary(m: AIMemory) -> dict[str, Any]:
    return {
        "id": m.id,
        "key": m.key_name,
        "value": m.value_data,
        "type": m.memory_type,
        "confidence": 1.0 if m.confidence_score is None else m.confidence_score,
        "source": m.source,
        "project_id": m.project_id,
        "conversation_id": m.conversation_id,
        "created": iso_time(m.created_at),
        "expires": iso_time(m.expires_at),
        "access_count": m.access_count or 0,
        "last_accessed": iso_time(m.last_accessed),
    }
