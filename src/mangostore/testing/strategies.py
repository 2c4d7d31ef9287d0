"""Hypothesis strategies for every record type: valid ``create`` arguments and stored records.

``fields(table)`` draws keyword arguments that ``db.<table>.create`` accepts: every
required column, the optional ones given or left out at random, values that satisfy
the column's type, enumeration, CHECK constraint and the repository's validation.
Foreign-key columns take their candidates from ``foreign=`` (they must name rows
that exist). ``records(make, table)`` goes one step further: it makes the parents
with the factory and returns the stored record.

Importing this module imports Hypothesis (a test dependency); nothing else in
:mod:`mangostore.testing` does.
"""

from __future__ import annotations

import functools
import itertools
import string
from collections.abc import Mapping, Sequence
from typing import Any, Final

from hypothesis import strategies as st

from mangostore.errors import InvalidValueError
from mangostore.records import RECORD_CLASSES, Record
from mangostore.repos.spec import ColumnSpec, table_spec
from mangostore.schema import introspect
from mangostore.testing.factories import Factory

__all__ = [
    "AUTO_COLUMNS",
    "CHECKED",
    "INT64_MAX",
    "INT64_MIN",
    "JSON_INT_LIMIT",
    "UNIQUE",
    "VALIDATED",
    "column_values",
    "fields",
    "foreign_key_columns",
    "json_values",
    "records",
]

#: JSON integers stay within the range every JSON reader holds exactly.
JSON_INT_LIMIT: Final = 2**53
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

#: Columns ``create`` fills in when they are not given; left to it.
AUTO_COLUMNS: Final = frozenset({"id", "created_at", "updated_at", "timestamp", "granted_at"})
#: Columns unique across a table: drawn values get a per-draw suffix.
UNIQUE: Final = frozenset(
    {
        ("users", "username"),
        ("users", "email"),
        ("notification_types", "name"),
        ("user_sessions", "session_token"),
    }
)
#: The columns ``db.security_events.create`` accepts (the audit log sets the others).
EVENT_COLUMNS: Final = frozenset(
    {
        "event_type",
        "severity",
        "source_component",
        "user_id",
        "event_data",
        "client_info",
        "risk_score",
    }
)

#: Columns named ``*_id`` that refer to no row of this database.
NOT_REFERENCES: Final = frozenset({"tmux_session_id", "resource_id"})

_draws = itertools.count()
_BY_TABLE: Final = {record.__table__: record for record in RECORD_CLASSES}


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


def _unit() -> st.SearchStrategy[float]:
    return st.floats(min_value=0.0, max_value=1.0)


def _hh_mm() -> st.SearchStrategy[str]:
    return st.builds("{:02d}:{:02d}".format, st.integers(0, 23), st.integers(0, 59))


#: Values the CHECK constraints allow, where a record's annotation alone says less
#: (score ranges, non-negative counts, ``HH:MM``, lowercase predicates): every CHECK of
#: a column whose record type does not already say it, and nothing else (mangostore's
#: own tests hold this table and the schema in step).
CHECKED: Final[Mapping[tuple[str, str], st.SearchStrategy[Any]]] = {
    ("voice_profiles", "accuracy_score"): _unit(),
    ("command_history", "voice_confidence"): _unit(),
    ("ai_memory", "confidence_score"): _unit(),
    ("kg_entities", "confidence_score"): _unit(),
    ("kg_relations", "confidence_score"): _unit(),
    ("kg_observations", "confidence_score"): _unit(),
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

#: Values the repositories' own validation allows beyond what a CHECK says: user names
#: (one script, nothing invisible, NFC), and what the audit log takes from a caller.
VALIDATED: Final[Mapping[tuple[str, str], st.SearchStrategy[Any]]] = {
    ("users", "username"): st.text(
        alphabet=string.ascii_lowercase + string.digits + "_-", min_size=1, max_size=20
    ),
    ("security_events", "source_component"): st.text(
        alphabet=string.ascii_lowercase + ".", min_size=1, max_size=20
    ).filter(lambda s: not s.startswith("audit.")),
    ("security_events", "event_data"): st.none()
    | st.dictionaries(st.text(max_size=10), st.integers(), max_size=3),
    ("security_events", "client_info"): st.none()
    | st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
}


@functools.cache
def column_values(table: str, column: ColumnSpec) -> st.SearchStrategy[Any]:
    """The valid values of one column, ``None`` included when it is nullable (made once
    per column: building strategies is not free).

    Unique columns are not made unique here; :func:`fields` does that.
    """
    key = (table, column.name)
    checked = CHECKED[key] if key in CHECKED else VALIDATED.get(key)
    values: st.SearchStrategy[Any]
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
    else:  # a column kind added to repos.spec must be added here
        raise AssertionError(f"no strategy for {column.kind} column {table}.{column.name}")
    return st.none() | values if column.nullable else values


def _record(table: str | type[Record]) -> type[Record]:
    if isinstance(table, str):
        if table not in _BY_TABLE:
            raise InvalidValueError(
                f"no record class for table {table!r}; tables: {', '.join(sorted(_BY_TABLE))}",
                field="table",
            )
        return _BY_TABLE[table]
    return table


def _tagged(value: Any, tag: str) -> Any:
    return value if value is None else f"{value}-{tag}"


def fields(
    table: str | type[Record],
    *,
    foreign: Mapping[str, Sequence[str]] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Valid keyword arguments of ``create`` for ``table``.

    Args:
        table: a table name or its record class.
        foreign: candidate ids of each foreign-key column; a foreign-key column not
            named here is left out (give every required one).

    Raises:
        InvalidValueError: no record class for ``table``.
    """
    record = _record(table)
    spec = table_spec(record)  # type: ignore[arg-type]
    given = foreign or {}
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, column in spec.columns.items():
        if name in AUTO_COLUMNS or (spec.name == "security_events" and name not in EVENT_COLUMNS):
            continue
        if name in given:
            values: st.SearchStrategy[Any] = st.sampled_from(list(given[name]))
        elif name.endswith("_id") and name not in NOT_REFERENCES:
            continue  # a reference: only to rows the caller named
        else:
            values = column_values(spec.name, column)
        (optional if column.nullable else required)[name] = values
    drawn = st.fixed_dictionaries(required, optional=optional)
    unique = [name for (table_name, name) in UNIQUE if table_name == spec.name]
    if not unique:
        return drawn

    def tag(values: dict[str, Any]) -> dict[str, Any]:
        suffix = f"u{next(_draws)}"
        return {k: _tagged(v, suffix) if k in unique else v for k, v in values.items()}

    return drawn.map(tag)


def foreign_key_columns(make: Factory, table: str) -> dict[str, str]:
    """``{column: parent table}`` for each foreign key of ``table`` in ``make.db``."""
    with make.db.store.snapshot() as conn:
        return {fk.column: fk.parent for fk in introspect.foreign_keys(conn, table)}


def records(make: Factory, table: str | type[Record]) -> st.SearchStrategy[Record]:
    """Records of ``table`` stored in ``make.db``, with parents made by ``make``.

    Each draw makes one parent row per required foreign key (optional references
    are left empty) and stores the record; the strategy returns it as stored.
    Drawing writes to the database, so use it with a database made for the test.
    """
    record = _record(table)
    name = record.__table__
    spec = table_spec(record)  # type: ignore[arg-type]
    references = foreign_key_columns(make, name)
    required = [c for c in references if c in spec.columns and not spec.columns[c].nullable]

    @st.composite
    def stored(draw: st.DrawFn) -> Record:
        owner = make.user().id if "user_id" in spec.columns or "user_id" in references else None
        parents: dict[str, Sequence[str]] = {}
        for column in required:
            parent = references[column]
            if parent == "users" and owner is not None:
                parents[column] = [owner]
            elif parent == "kg_entities":
                parents[column] = [make.kg_entity(user=owner).id]
            else:
                parents[column] = [str(make.for_table(parent).to_dict()["id"])]
        if owner is not None and "user_id" in spec.columns:
            parents["user_id"] = [owner]
        values = draw(fields(record, foreign=parents))
        repository = getattr(make.db, name)
        made: Record = repository.create(**values)
        return made

    return stored()
