"""``mangostore kg``: search, show, import and export the knowledge graph of a database file."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from mangostore.cli.common import (
    CommandError,
    Feature,
    console,
    existing_database,
    key_file_option,
    open_for,
    plain_option,
    resolve_user,
    utc_text,
)
from mangostore.files import write_private
from mangostore.kg.model import ENTITY_TYPES

#: The schema version that brought the tables the knowledge graph service needs.
KG_SCHEMA_VERSION = 8

_user_option = click.option(
    "--user", "user", required=True, help="The user: a user name or a user id."
)


# Closing the database (leaving the with block) also writes the graph's buffered
# access counts.
GRAPH = Feature("the knowledge graph", KG_SCHEMA_VERSION)


@click.group()
def kg() -> None:
    """Search, show, import and export the knowledge graph."""


def _parse_as_of(value: str | None) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "give epoch milliseconds or an ISO 8601 date and time", param_hint="--as-of"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return int(stamp.timestamp() * 1000)


@kg.command("search")
@existing_database
@click.argument("query")
@_user_option
@click.option(
    "-k", "--top", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Hits."
)
@click.option(
    "--type", "types", multiple=True, type=click.Choice(ENTITY_TYPES), help="Only this type."
)
@click.option("--as-of", help="Search the graph as it was then (ISO 8601 or epoch ms).")
@click.option("--explain", is_flag=True, help="Show each hit's score breakdown and evidence.")
@click.option("--no-vectors", is_flag=True, help="Full text and graph only, no embedder.")
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
@plain_option
@key_file_option
def search(
    path: Path,
    query: str,
    user: str,
    k: int,
    types: tuple[str, ...],
    as_of: str | None,
    explain: bool,
    no_vectors: bool,
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Search the knowledge graph of --user in the database at PATH for QUERY."""
    when = _parse_as_of(as_of)
    with open_for(path, plain=plain, key_file=key_file, feature=GRAPH) as db:
        user_id = resolve_user(db, user)
        if no_vectors:
            db.kg.set_embedder(None)
        hits = db.kg.search(
            user_id, query, k=k, types=list(types) or None, as_of=when, explain=explain
        )
    rows: list[dict[str, Any]] = []
    for hit in hits:
        row: dict[str, Any] = {
            "id": hit.entity.id,
            "type": hit.entity.entity_type,
            "name": hit.entity.name,
            "score": round(hit.score, 6),
        }
        if hit.explanation is not None:
            row["components"] = {
                name: {"rank": c.rank, "contribution": round(c.contribution, 6)}
                for name, c in hit.explanation.components.items()
            }
            row["factors"] = {n: round(f, 4) for n, f in hit.explanation.factors.items()}
            row["evidence"] = [
                {"retriever": e.retriever, "kind": e.kind, "source": e.source_id, "text": e.text}
                for e in hit.explanation.evidence
            ]
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    out = console()
    if not rows:
        out.print("No hits.")
        return
    for number, row in enumerate(rows, 1):
        out.print(
            Text(f"{number:>2}. {row['name']}  ({row['type']})  {row['score']:.4f}  {row['id']}")
        )
        if "components" in row:
            parts = ", ".join(f"{n} #{c['rank']}" for n, c in row["components"].items())
            factors = ", ".join(f"{n} {f}" for n, f in row["factors"].items())
            out.print(Text(f"    {parts}; {factors}"))
            for e in row["evidence"]:
                if e["text"]:
                    out.print(Text(f"    {e['retriever']}: {e['text'][:100]}"))


@kg.command("show")
@existing_database
@click.argument("entity")
@_user_option
@click.option("--json", "as_json", is_flag=True, help="Print the entity as JSON.")
@plain_option
@key_file_option
def show(
    path: Path, entity: str, user: str, as_json: bool, plain: bool, key_file: Path | None
) -> None:
    """Show ENTITY (an id, a name or an alias) of --user: aliases, observations, relations."""
    with open_for(path, plain=plain, key_file=key_file, feature=GRAPH) as db:
        user_id = resolve_user(db, user)
        view = db.kg.describe(db.kg.resolve(user_id, entity))
    e = view.entity
    observations = [
        {"type": o.observation_type, "content": o.content, "verified": o.verified}
        for o in view.observations
    ]
    outgoing = [
        {
            "predicate": r.predicate,
            "object": view.names.get(r.object_id, r.object_id),
            "weight": r.weight,
            "since": utc_text(r.valid_from, "-"),
        }
        for r in view.outgoing
    ]
    incoming = [
        {
            "subject": view.names.get(r.subject_id, r.subject_id),
            "predicate": r.predicate,
            "weight": r.weight,
            "since": utc_text(r.valid_from, "-"),
        }
        for r in view.incoming
    ]
    if as_json:
        data = {
            "id": e.id,
            "type": e.entity_type,
            "name": e.name,
            "description": e.description,
            "metadata": e.metadata,
            "confidence": e.confidence_score,
            "access_count": e.access_count,
            "aliases": view.aliases,
            "observations": observations,
            "relations": outgoing,
            "incoming": incoming,
        }
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    out = console()
    out.print(Text(f"{e.name}  ({e.entity_type})  {e.id}"))
    if e.description:
        out.print(Text(f"  {e.description}"))
    if view.aliases:
        out.print(Text(f"  also known as: {', '.join(view.aliases)}"))
    for o in view.observations:
        mark = " (verified)" if o.verified else ""
        out.print(Text(f"  - [{o.observation_type}] {o.content}{mark}"))
    for rel, other in zip(view.outgoing, outgoing, strict=True):
        tail = f"(weight {rel.weight:g}, since {other['since']})"
        out.print(Text(f"  -{rel.predicate}-> {other['object']}  {tail}"))
    for rel, other in zip(view.incoming, incoming, strict=True):
        tail = f"(weight {rel.weight:g}, since {other['since']})"
        out.print(Text(f"  <-{rel.predicate}- {other['subject']}  {tail}"))


@kg.command("import")
@existing_database
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@_user_option
@plain_option
@key_file_option
def import_(path: Path, file: Path, user: str, plain: bool, key_file: Path | None) -> None:
    """Import FILE (the MCP memory server's JSONL; '-' for stdin) into --user's graph."""
    try:
        if str(file) == "-":
            lines = sys.stdin.read().splitlines()
        else:
            lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {file}: {exc}") from None
    with open_for(path, plain=plain, key_file=key_file, feature=GRAPH) as db:
        counts = db.kg.import_jsonl(resolve_user(db, user), lines)
    console().print(
        Text(
            f"Imported {counts['entities_created']} new and {counts['entities_matched']} "
            f"existing entities, {counts['observations']} observations, "
            f"{counts['relations']} relations ({counts['relations_skipped']} skipped)."
        )
    )


@kg.command("export")
@existing_database
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@_user_option
@plain_option
@key_file_option
def export(path: Path, file: Path, user: str, plain: bool, key_file: Path | None) -> None:
    """Export --user's graph to FILE as the MCP memory server's JSONL ('-' for stdout).

    The file holds the graph in plain text: keep it somewhere safe.
    """
    with open_for(path, plain=plain, key_file=key_file, feature=GRAPH) as db:
        lines = list(db.kg.export_jsonl(resolve_user(db, user)))
    text = "".join(line + "\n" for line in lines)
    if str(file) == "-":
        click.echo(text, nl=False)
        return
    try:
        write_private(file, text.encode("utf-8"))
    except OSError as exc:
        raise CommandError(f"cannot write {file}: {exc.strerror}") from None
    console().print(Text(f"Wrote {len(lines)} lines to {file}."))
