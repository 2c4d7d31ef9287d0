"""Hypothesis strategies for the record classes: valid ``create`` and ``update`` arguments.

Column strategies are derived from :func:`mangostore.repos.spec.table_spec`: the kind of
each column (text, int, float, bool, json, encrypted, blob), its enumeration and whether
it is nullable. The CHECK constraints of the migrations that the record classes cannot
express (score ranges, non-negative counts, ``HH:MM`` quiet hours, lowercase predicates)
are in :data:`CHECKED`, and a test keeps that table in step with the schema.

Foreign keys point at rows that must exist first: :func:`create_parents` makes one row
of every parent table (two users and two entities, so a reference can change), and
:func:`references` turns them into the candidate ids of each foreign-key column, read
from ``PRAGMA foreign_key_list``.
"""

from __future__ import annotations

import functools
import itertools
import string
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

import mangostore
from mangostore.records import Record
from mangostore.repos.spec import ColumnSpec, table_spec

#: JSON integers stay within the range every JSON reader holds exactly.
JSON_INT_LIMIT = 2**53
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

#: Columns ``create`` fills in when they are not given.
AUTO_COLUMNS = frozenset({"id", "created_at", "updated_at", "timestamp", "granted_at"})

#: Columns unique across the whole table; generated values get a per-example suffix.
GLOBALLY_UNIQUE = frozenset(
    {
        ("users", "username"),
        ("users", "email"),
        ("notification_types", "name"),
        ("user_sessions", "session_token"),
    }
)

_tags = itertools.count()


def fresh_tag() -> str:
    """Return a tag no earlier call in this process returned (for unique names)."""
    return f"t{next(_tags)}"


# -- values -----------------------------------------------------------------------------


@functools.cache
def json_values() -> st.SearchStrategy[Any]:
    """Any JSON document: null, booleans, exact integers, finite floats, text, lists, objects."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-JSON_INT_LIMIT, JSON_INT_LIMIT)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=12,
    )


def _unit_floats() -> st.SearchStrategy[float]:
    return st.floats(min_value=0.0, max_value=1.0)


def _hh_mm() -> st.SearchStrategy[str]:
    return st.builds("{:02d}:{:02d}".format, st.integers(0, 23), st.integers(0, 59))


#: Values allowed by CHECK constraints that a record annotation does not capture.
CHECKED: Mapping[tuple[str, str], st.SearchStrategy[Any]] = {
    ("voice_profiles", "accuracy_score"): _unit_floats(),
    ("command_history", "voice_confidence"): _unit_floats(),
    ("ai_memory", "confidence_score"): _unit_floats(),
    ("kg_entities", "confidence_score"): _unit_floats(),
    ("kg_relations", "confidence_score"): _unit_floats(),
    ("kg_observations", "confidence_score"): _unit_floats(),
    ("security_events", "risk_score"): st.floats(min_value=0.0, allow_infinity=False),
    ("notification_types", "retention_days"): st.integers(0, INT64_MAX),
    ("ai_conversations", "token_count"): st.integers(0, INT64_MAX),
    ("ai_memory", "access_count"): st.integers(0, INT64_MAX),
    ("kg_entities", "access_count"): st.integers(0, INT64_MAX),
    ("kg_embeddings", "dimensions"): st.integers(1, INT64_MAX),
    ("notification_preferences", "quiet_hours_start"): _hh_mm(),
    ("notification_preferences", "quiet_hours_end"): _hh_mm(),
    ("kg_relations", "predicate"): st.text(
        alphabet=string.ascii_lowercase + string.digits + "_", min_size=1, max_size=20
    ),
}


#: Values allowed by the repositories' own validation, beyond what a CHECK says: user
#: names follow mangostore.repos.usernames (one script, nothing invisible, stored in
#: NFC), whose rules have their own tests.
VALIDATED: Mapping[tuple[str, str], st.SearchStrategy[Any]] = {
    ("users", "username"): st.text(
        alphabet=string.ascii_lowercase + string.digits + "_-", min_size=1, max_size=20
    ),
}


def column_values(table: str, column: ColumnSpec, *, tag: str = "") -> st.SearchStrategy[Any]:
    """Return the valid values of one column (``None`` included when it is nullable).

    Args:
        table: the column's table, to look up CHECK constraints and uniqueness.
        column: the column's spec.
        tag: appended to values of a globally unique column so examples never clash.
    """
    values = _column_values(table, column)
    if (table, column.name) in GLOBALLY_UNIQUE:
        values = values.map(lambda s: s if s is None else f"{s}#{tag}")
    return values


@functools.cache
def _column_values(table: str, column: ColumnSpec) -> st.SearchStrategy[Any]:
    # Made once per column: building (and validating) strategies is not free.
    key = (table, column.name)
    checked = CHECKED[key] if key in CHECKED else VALIDATED.get(key)
    if checked is not None:
        values = checked
    elif column.choices is not None:
        values = st.sampled_from(column.choices)
    elif column.kind in ("json", "encrypted"):
        values = json_values()
        if not column.nullable:
            values = values.filter(lambda v: v is not None)
    elif column.kind == "text":
        values = st.text(max_size=40)
    elif column.kind == "int":
        values = st.integers(INT64_MIN, INT64_MAX)
    elif column.kind == "float":
        # Integers are accepted for REAL columns; exact ones convert without loss.
        values = st.floats(allow_nan=False, allow_infinity=False) | st.integers(
            -JSON_INT_LIMIT, JSON_INT_LIMIT
        )
    elif column.kind == "bool":
        values = st.booleans()
    elif column.kind == "blob":
        values = st.binary(max_size=64)
    else:  # pragma: no cover - a new kind must be added here
        raise AssertionError(f"no strategy for {column.kind} column {table}.{column.name}")
    return st.none() | values if column.nullable else values


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
    return {
        "users": users,
        "projects": [project],
        "terminal_sessions": [session],
        "voice_profiles": [voice],
        "notification_types": [kind],
        "notifications": [notification],
        "ai_conversations": [conversation],
        "kg_entities": entities,
    }


def references(
    db: mangostore.Database, table: str, parents: Mapping[str, Sequence[str]]
) -> dict[str, Sequence[str]]:
    """Return ``{foreign-key column: candidate parent ids}`` for ``table``.

    Raises:
        KeyError: ``parents`` has no row of a table that ``table`` refers to.
    """
    return {column: parents[parent] for column, parent in foreign_keys(db, table).items()}


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
