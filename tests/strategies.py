"""Hypothesis strategies for the record classes: valid ``create`` and ``update`` arguments.

Column strategies are those of :mod:`mangostore.testing.strategies` (the plugin's, which
applications use too): derived from the record classes, with the CHECK constraints the
records cannot express in its ``CHECKED``, which a test keeps in step with the schema.

Foreign keys point at rows that must exist first: :func:`create_parents` makes one row
of every parent table (two users and two entities, so a reference can change), and
:func:`references` turns them into the candidate ids of each foreign-key column, read
from ``PRAGMA foreign_key_list``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

import mangostore
from mangostore.records import Record
from mangostore.repos.spec import ColumnSpec, table_spec
from mangostore.testing.strategies import (
    AUTO_COLUMNS,
    INT64_MAX,
    UNIQUE,
)
from mangostore.testing.strategies import column_values as public_column_values

_tags = itertools.count()


def fresh_tag() -> str:
    """Return a tag no earlier call in this process returned (for unique names)."""
    return f"t{next(_tags)}"


# -- values -----------------------------------------------------------------------------


def column_values(table: str, column: ColumnSpec, *, tag: str = "") -> st.SearchStrategy[Any]:
    """Return the valid values of one column (``None`` included when it is nullable).

    Args:
        table: the column's table, to look up CHECK constraints and uniqueness.
        column: the column's spec.
        tag: appended to values of a globally unique column so examples never clash.
    """
    values = public_column_values(table, column)
    if (table, column.name) in UNIQUE:
        values = values.map(lambda s: s if s is None else f"{s}#{tag}")
    return values


# -- foreign keys -----------------------------------------------------------------------


def foreign_keys(db: mangostore.Database, table: str) -> dict[str, str]:
    """Return ``{column: parent table}`` for each foreign key of ``table``."""
    rows = db.query('SELECT "from", "table" FROM pragma_foreign_key_list(?)', (table,))
    return {row[0]: row[1] for row in rows}


def create_parents(db: mangostore.Database, tag: str | None = None) -> dict[str, list[str]]:
    """Create a row of every table that others refer to; return ``{table: [ids]}``.

    Two users and two knowledge-graph entities are made so that references to them
    can be changed by an update. Everything belongs to the first user.
    """
    tag = tag or fresh_tag()
    users = [db.users.create(username=f"parent-{n}-{tag}").id for n in range(2)]
    owner = users[0]
    project = db.projects.create(user_id=owner, name="parent", path=f"/parent/{tag}").id
    session = db.terminal_sessions.create(user_id=owner, project_id=project).id
    voice = db.voice_profiles.create(user_id=owner, name="parent").id
    kind = db.notification_types.create(
        name=f"parent-{tag}", category="system", template="{message}"
    ).id
    notification = db.notifications.create(
        user_id=owner, notification_type_id=kind, title="t", message="m", priority="normal"
    ).id
    conversation = db.ai_conversations.create(user_id=owner, project_id=project).id
    entities = [
        db.kg_entities.create(user_id=owner, entity_type="concept", name=f"parent-{n}").id
        for n in range(2)
    ]
    stored = _stored_file(db, owner, tag)
    return {
        "users": users,
        "projects": [project],
        "terminal_sessions": [session],
        "voice_profiles": [voice],
        "notification_types": [kind],
        "notifications": [notification],
        "ai_conversations": [conversation],
        "kg_entities": entities,
        "files": [stored],
    }


def _stored_file(db: mangostore.Database, owner: str, tag: str) -> str:
    """A stored file of ``owner``: put through ``db.files`` where the database has keys,
    else an empty file's row (no chunk to seal) written directly."""
    if db.store.keyring is not None:
        return db.files.put(owner, f"parent {tag}".encode(), name="parent.txt").id
    file_id = f"file-{tag}"
    with db.store.transaction() as conn:
        conn.execute(
            "INSERT INTO files (id, user_id, name, media_type, size, digest, chunk_count, "
            "created_at, parts) VALUES (?, ?, 'parent', 'text/plain', 0, ?, 0, 0, '[]')",
            (file_id, owner, hashlib.sha256(b"").hexdigest()),
        )
    return file_id


def references(
    db: mangostore.Database, table: str, parents: Mapping[str, Sequence[str]]
) -> dict[str, Sequence[str]]:
    """Return ``{foreign-key column: candidate parent ids}`` for ``table``.

    Raises:
        KeyError: ``parents`` has no row of a table that ``table`` refers to.
    """
    found = {column: parents[parent] for column, parent in foreign_keys(db, table).items()}
    if "files" in foreign_keys(db, table).values() and "user_id" in found:
        # A row may refer only to its own user's files (the parent file is the first
        # user's), so such a row keeps that user.
        found["user_id"] = parents["users"][:1]
    return found


# -- arguments --------------------------------------------------------------------------


def _columns(
    record: type[Record],
    refs: Mapping[str, Sequence[str]],
    tag: str,
    skip: Collection[str],
) -> tuple[dict[str, st.SearchStrategy[Any]], dict[str, st.SearchStrategy[Any]]]:
    """Split the strategies of ``record``'s columns into required and optional ones."""
    spec = table_spec(record)
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, column in spec.columns.items():
        if name == "id" or name in skip:
            continue
        if name in refs:
            values: st.SearchStrategy[Any] = st.sampled_from(list(refs[name]))
            if column.nullable:
                values = st.none() | values
        elif name in AUTO_COLUMNS:
            values = st.integers(0, INT64_MAX)
        else:
            values = column_values(spec.name, column, tag=tag)
        if column.nullable or name in AUTO_COLUMNS:
            optional[name] = values
        else:
            required[name] = values
    return required, optional


def create_kwargs(
    record: type[Record], refs: Mapping[str, Sequence[str]], *, tag: str
) -> st.SearchStrategy[dict[str, Any]]:
    """Valid keyword arguments of ``create`` for ``record``'s table.

    Every required column is given; nullable and automatically filled columns are
    given or left out at random. ``id`` is always left to the repository.

    Args:
        record: the record class.
        refs: candidate ids of every foreign-key column (see :func:`references`).
        tag: unique to the example, so globally unique columns never clash.
    """
    required, optional = _columns(record, refs, tag, ())
    return st.fixed_dictionaries(required, optional=optional)


def update_kwargs(
    record: type[Record],
    refs: Mapping[str, Sequence[str]],
    *,
    tag: str,
    skip: Collection[str] = (),
) -> st.SearchStrategy[dict[str, Any]]:
    """Valid, non-empty keyword arguments of ``update`` for ``record``'s table.

    Args:
        record: the record class.
        refs: candidate ids of every foreign-key column (see :func:`references`).
        tag: unique to the example, so globally unique columns never clash.
        skip: columns never to change.
    """
    required, optional = _columns(record, refs, tag, skip)
    return st.fixed_dictionaries({}, optional={**required, **optional}).filter(bool)
