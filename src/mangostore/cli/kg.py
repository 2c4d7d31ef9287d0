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
from mangostore.cli.output import (
    deprecated_form,
    emit_json,
    file_output,
    iso_time,
    json_option,
    output_option,
)
from mangostore.cli.progress import progress_bar
from mangostore.files import write_private
from mangostore.kg.model import ENTITY_TYPES, Observation, Relation
from mangostore.kg.search import MIN_CONFIDENCE

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
@click.option("--speaker", help="The person entity that 'I' and 'my' mean (id or name).")
@click.option(
    "--min-confidence",
    type=click.FloatRange(0, 1),
    default=MIN_CONFIDENCE,
    show_default=True,
    help="Below this confidence of the best hit, print no hit.",
)
@json_option
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
    speaker: str | None,
    min_confidence: float,
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Search the knowledge graph of --user in the database at PATH for QUERY.

    QUERY may be a question as spoken ("which shell do I prefer these days"); each hit
    shows how sure it is and the fact that answers it.
    """
    when = _parse_as_of(as_of)
    with open_for(path, plain=plain, key_file=key_file, feature=GRAPH) as db:
        user_id = resolve_user(db, user)
        if no_vectors:
            db.kg.set_embedder(None)
        else:
            # What search would embed first (seconds after a large import), with a bar.
            with progress_bar(as_json=as_json) as bar:
                db.kg.embed_pending(user_id, progress=bar)
        me = db.kg.resolve(user_id, speaker, "person") if speaker is not None else None
        hits = db.kg.search(
            user_id,
            query,
            k=k,
            types=list(types) or None,
            as_of=when,
            explain=explain,
            speaker=me,
            min_confidence=min_confidence,
        )
        facts = [_fact_text(db, hit.fact) for hit in hits]
    rows: list[dict[str, Any]] = []
    for hit, fact in zip(hits, facts, strict=True):
        row: dict[str, Any] = {
            "id": hit.entity.id,
            "type": hit.entity.entity_type,
            "name": hit.entity.name,
            "score": round(hit.score, 6),
            "confidence": round(hit.confidence, 4),
            "fact": fact,
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
        emit_json(rows)
        return
    out = console()
    if not rows:
        out.print("No hits.")
        return
    for number, row in enumerate(rows, 1):
        out.print(
            Text(
                f"{number:>2}. {row['name']}  ({row['type']})  "
                f"confidence {row['confidence']:.2f}  {row['id']}"
            )
        )
        if row["fact"] is not None:
            fact = row["fact"]
            held = f"since {fact['since']}" + (f" until {fact['until']}" if fact["until"] else "")
            out.print(Text(f"    {fact['text']}  ({held})"))
        if "components" in row:
            parts = ", ".join(f"{n} #{c['rank']}" for n, c in row["components"].items())
            factors = ", ".join(f"{n} {f}" for n, f in row["factors"].items())
            out.print(Text(f"    {parts}; {factors}"))
            for e in row["evidence"]:
                if e["text"]:
                    out.print(Text(f"    {e['retriever']}: {e['text'][:100]}"))


def _fact_text(db: Any, fact: Relation | Observation | None) -> dict[str, Any] | None:
    """Describe the fact of a hit in words, with when it held."""
    if fact is None:
        return None
    if isinstance(fact, Relation):
        ends = (db.kg_entities.get(fact.subject_id), db.kg_entities.get(fact.object_id))
        names = {e.id: e.name for e in ends}
        text = f"{names[fact.subject_id]} -{fact.predicate}-> {names[fact.object_id]}"
    else:
        text = fact.content
    return {
        "id": fact.id,
        "text": text,
        "since": iso_time(fact.valid_from),
        "until": None if fact.valid_to is None else iso_time(fact.valid_to),
    }


@kg.command("suggestions")
@existing_database
@_user_option
@click.option("--dismiss", "dismiss", multiple=True, help="Dismiss this suggestion (an id).")
@json_option
@plain_option
@key_file_option
def suggestions(
    path: Path,
    user: str,
    dismiss: tuple[str, ...],
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """List the near-duplicate entities of --user that were not merged on their own.

    Merge one with the library's ``db.kg.merge(candidate, entity)``; dismiss one that
    names two different things with --dismiss ID.
    """
    with open_for(path, plain=plain, key_file=key_file, feature=GRAPH) as db:
        user_id = resolve_user(db, user)
        for suggestion_id in dismiss:
            db.kg.dismiss_suggestion(suggestion_id)
        rows = [
            {
                "id": s.id,
                "entity": db.kg_entities.get(s.entity_id).name,
                "candidate": db.kg_entities.get(s.candidate_id).name,
                "similarity": round(s.similarity, 3),
                "reason": s.reason,
                "created_at": iso_time(s.created_at),
            }
            for s in db.kg.merge_suggestions(user_id)
        ]
    if as_json:
        emit_json(rows)
        return
    out = console()
    if not rows:
        out.print("No merge suggestions.")
    for row in rows:
        out.print(Text(f"{row['entity']} ~ {row['candidate']}  ({row['reason']})  {row['id']}"))


@kg.command("show")
@existing_database
@click.argument("entity")
@_user_option
@json_option
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
            "since": iso_time(r.valid_from),
        }
        for r in view.outgoing
    ]
    incoming = [
        {
            "subject": view.names.get(r.subject_id, r.subject_id),
            "predicate": r.predicate,
            "weight": r.weight,
            "since": iso_time(r.valid_from),
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
        emit_json(data)
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
        tail = f"(weight {rel.weight:g}, since {utc_text(rel.valid_from, '-')})"
        out.print(Text(f"  -{rel.predicate}-> {other['object']}  {tail}"))
    for rel, other in zip(view.incoming, incoming, strict=True):
        tail = f"(weight {rel.weight:g}, since {utc_text(rel.valid_from, '-')})"
        out.print(Text(f"  <-{rel.predicate}- {other['subject']}  {tail}"))


@kg.command("import")
@existing_database
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@_user_option
@json_option
@plain_option
@key_file_option
def import_(
    path: Path, file: Path, user: str, as_json: bool, plain: bool, key_file: Path | None
) -> None:
    """Import FILE (the MCP memory server's JSONL; '-' for stdin) into --user's graph."""
    try:
        if str(file) == "-":
            lines = sys.stdin.read().splitlines()
        else:
            lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {file}: {exc}") from None
    with (
        open_for(path, plain=plain, key_file=key_file, feature=GRAPH) as db,
        progress_bar(as_json=as_json) as bar,
    ):
        counts = db.kg.import_jsonl(resolve_user(db, user), lines, progress=bar)
    if as_json:
        emit_json(dict(counts))
        return
    console().print(
        Text(
            f"Imported {counts['entities_created']} new and {counts['entities_matched']} "
            f"existing entities, {counts['observations']} observations, "
            f"{counts['relations']} relations ({counts['relations_skipped']} skipped)."
        )
    )


@kg.command("export")
@existing_database
@click.argument(
    "file", required=False, type=click.Path(dir_okay=False, allow_dash=True, path_type=Path)
)
@_user_option
@output_option("the JSONL")
@json_option
@plain_option
@key_file_option
def export(
    path: Path,
    file: Path | None,
    user: str,
    output: Path | None,
    as_json: bool,
    plain: bool,
    key_file: Path | None,
) -> None:
    """Export --user's graph as the MCP memory server's JSONL, to -o FILE or stdout.

    The file holds the graph in plain text: keep it somewhere safe. (The FILE
    argument is the older way to name the output and still works.)
    """
    if file is not None:
        if output is not None:
            raise click.UsageError(
                "name the output once: -o FILE (FILE as an argument is the old form)"
            )
        deprecated_form("'kg export PATH FILE'", "'kg export PATH -o FILE'")
        output = file
    with open_for(path, plain=plain, key_file=key_file, feature=GRAPH) as db:
        lines = list(db.kg.export_jsonl(resolve_user(db, user)))
    target = file_output(output)
    to_stdout = target is None
    if target is not None:
        try:
            write_private(target, "".join(line + "\n" for line in lines).encode("utf-8"))
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror}") from None
    if as_json:
        result: dict[str, Any] = {"output": None if to_stdout else str(output), "lines": len(lines)}
        if to_stdout:
            result["records"] = [json.loads(line) for line in lines]
        emit_json(result)
    elif to_stdout:
        click.echo("".join(line + "\n" for line in lines), nl=False)
    else:
        console().print(Text(f"Wrote {len(lines)} lines to {output}."))
