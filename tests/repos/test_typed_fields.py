"""Every repository's ``create`` and ``update`` are typed per table, and the types equal
the live schema: a type checker refuses a misspelt column, and the ``TypedDict`` classes
of :mod:`mangostore.repos.fields` and :mod:`mangostore.repos.changes` cannot drift from
the migrations (docs/api-conventions.md, "Typed fields")."""

from __future__ import annotations

import re
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from mypy import api as mypy_api

import mangostore
from design import DESIGN_TABLES, Rows
from mangostore.errors import InvalidValueError, MissingFieldError, UnknownColumnError
from mangostore.records import RECORD_CLASSES
from mangostore.repos import changes, fields
from mangostore.repos.fields import Blob
from mangostore.schema import introspect
from mangostore.schema.sensitive import SENSITIVE_FIELDS

ROOT = Path(__file__).resolve().parents[2]
RECORDS = {cls.__table__: cls for cls in RECORD_CLASSES}
#: What each declared type of the schema holds, as the repositories accept it.
DECLARED: dict[str, Any] = {"TEXT": str, "INTEGER": int, "REAL": float, "BOOLEAN": bool}
#: Columns ``create`` fills when they are left out, in every table.
FILLED = ("id", "created_at", "updated_at")
#: ``CHECK (column IN ('a', 'b'))`` and ``CHECK (json_valid(column))`` in a table's SQL.
ENUM_CHECK = re.compile(r"\b(\w+)\s+IN\s*\(\s*('[^)]*)\)")
JSON_CHECK = re.compile(r"json_valid\(\s*(\w+)\s*\)")


# -- the TypedDicts and the live schema ----------------------------------------------------


class Schema:
    """What the live schema says a column of a table takes."""

    def __init__(self, db: mangostore.Database) -> None:
        with db.store.reading() as conn:
            self.columns = {t: introspect.columns(conn, t) for t in DESIGN_TABLES}
            self.sql = {o.name: o.sql for o in introspect.schema_objects(conn, "table")}

    def types(self, table: str) -> dict[str, Any]:
        """Column -> the Python type a write takes for it (see the module docstring)."""
        sql = self.sql[table]
        as_json = set(JSON_CHECK.findall(sql)) | set(SENSITIVE_FIELDS.get(table, ()))
        choices = {
            name: tuple(re.findall(r"'([^']*)'", values))
            for name, values in ENUM_CHECK.findall(sql)
        }
        found: dict[str, Any] = {}
        for column in self.columns[table]:
            if column.name in as_json:
                found[column.name] = Any  # any JSON value; None is a JSON value too
                continue
            if column.name in choices:
                kind: Any = Literal[choices[column.name]]
            elif column.declared_type == "BLOB":
                kind = Blob
            else:
                kind = DECLARED[column.declared_type]
            nullable = not column.not_null and not column.primary_key
            found[column.name] = kind | None if nullable else kind
        return found

    def required(self, table: str, now_on_create: tuple[str, ...]) -> set[str]:
        """Columns ``create`` must be given: NOT NULL, no default, not filled in."""
        return {
            c.name
            for c in self.columns[table]
            if c.not_null and c.default is None and c.name not in (*FILLED, *now_on_create)
        }


def atoms(hint: Any) -> frozenset[Any]:
    """A type as the set of what it admits: unions flattened, literals as their values."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return frozenset().union(*(atoms(arg) for arg in typing.get_args(hint)))
    if typing.get_origin(hint) is Literal:
        return frozenset(("literal", value) for value in typing.get_args(hint))
    return frozenset({hint})


def hints(cls: type) -> dict[str, frozenset[Any]]:
    return {name: atoms(hint) for name, hint in typing.get_type_hints(cls).items()}


@pytest.fixture(scope="module")
def schema_db() -> Iterator[mangostore.Database]:
    """One migrated in-memory database for the module."""
    with mangostore.open(":memory:", encrypted=False) as db:
        yield db


@pytest.fixture(scope="module")
def schema(schema_db: mangostore.Database) -> Schema:
    return Schema(schema_db)


def test_there_is_one_class_of_each_kind_per_table_and_per_method_passing_fields_on() -> None:
    names = {cls.__name__ for cls in RECORD_CLASSES}
    passed_on = {param.values[0].__name__ for param in PASSED_ON}
    per_table = {f"{n}Fields" for n in names} | {f"{n}Changes" for n in names}
    assert {*fields.__all__, *changes.__all__} == per_table | passed_on | {"Blob"}


@pytest.mark.parametrize("table", [t for t in DESIGN_TABLES if t != "security_events"])
def test_create_takes_every_column_with_its_type(
    schema: Schema, schema_db: mangostore.Database, table: str
) -> None:
    typed = getattr(fields, f"{RECORDS[table].__name__}Fields")
    expected = {name: atoms(kind) for name, kind in schema.types(table).items()}
    expected["id"] = frozenset({str})  # never None: create makes one when it is left out
    assert hints(typed) == expected
    assert list(typing.get_type_hints(typed)) == [c.name for c in schema.columns[table]]
    repo = getattr(schema_db, table)
    assert set(typed.__required_keys__) == schema.required(table, repo.now_on_create)


@pytest.mark.parametrize("table", [t for t in DESIGN_TABLES if t != "security_events"])
def test_update_takes_every_column_but_the_id(schema: Schema, table: str) -> None:
    typed = getattr(changes, f"{RECORDS[table].__name__}Changes")
    expected = {name: atoms(kind) for name, kind in schema.types(table).items() if name != "id"}
    assert hints(typed) == expected
    assert typed.__required_keys__ == frozenset()


#: The methods that pass ``**fields`` on to ``create`` or ``update``: (their TypedDict,
#: the one of the call it makes, the columns it gives itself).
PASSED_ON = [
    pytest.param(
        fields.CommandHistoryRecordFields,
        fields.CommandHistoryFields,
        {"user_id", "command"},
        id="command_history.record",
    ),
    pytest.param(
        fields.TerminalSessionOpenFields,
        fields.TerminalSessionFields,
        {"user_id", "status", "last_activity"},
        id="terminal_sessions.open",
    ),
    pytest.param(
        changes.TerminalSessionActivityChanges,
        changes.TerminalSessionChanges,
        {"last_activity"},
        id="terminal_sessions.record_activity",
    ),
]


@pytest.mark.parametrize(("typed", "passed_to", "own"), PASSED_ON)
def test_methods_passing_fields_on_take_the_rest_of_the_columns(
    typed: type, passed_to: type, own: set[str]
) -> None:
    rest = {name: hint for name, hint in hints(passed_to).items() if name not in own}
    assert hints(typed) == rest
    assert list(typing.get_type_hints(typed)) == list(rest)
    assert typed.__required_keys__ == frozenset()  # type: ignore[attr-defined]


@pytest.mark.parametrize("table", DESIGN_TABLES)
def test_create_without_fields_names_a_required_column(
    schema_db: mangostore.Database, table: str
) -> None:
    """The run-time check refuses what the ``Required`` keys promise it refuses."""
    repo = getattr(schema_db, table)
    typed = getattr(fields, f"{RECORDS[table].__name__}Fields")
    with pytest.raises(MissingFieldError) as refused:
        repo.create()
    assert refused.value.field in typed.__required_keys__


def test_security_events_take_what_the_audit_log_lets_a_caller_give(
    schema: Schema, schema_db: mangostore.Database
) -> None:
    columns = schema.types("security_events")
    given = hints(fields.SecurityEventFields)
    assert given == {name: atoms(columns[name]) for name in given}
    assert set(fields.SecurityEventFields.__required_keys__) == schema.required(
        "security_events", ("timestamp", "seq")
    )
    required: dict[str, Any] = {
        "event_type": "auth",
        "severity": "info",
        "source_component": "tests",
    }
    for name in set(columns) - set(given):
        with pytest.raises(InvalidValueError, match="set by the audit log") as refused:
            schema_db.security_events.create(**required, **{name: None})
        assert refused.value.field == name
    assert typing.get_type_hints(changes.SecurityEventChanges) == {
        "resolved": Literal[True],
        "resolved_by": str,
    }
    assert changes.SecurityEventChanges.__required_keys__ == {"resolved", "resolved_by"}


def test_a_misspelt_field_is_still_named_at_run_time(schema_db: mangostore.Database) -> None:
    """Callers without a type checker (or with a ``dict[str, Any]``) keep the run-time check."""
    spelt: dict[str, Any] = {"usernme": "bob"}
    with pytest.raises(UnknownColumnError, match="did you mean 'username'") as refused:
        schema_db.users.create(**spelt)
    assert refused.value.field == "usernme"
    user = Rows(schema_db).user()
    with pytest.raises(UnknownColumnError, match="did you mean 'email'"):
        schema_db.users.update(user.id, **{"emial": "bob@example.org"})


# -- what mypy makes of calls ----------------------------------------------------------------

#: One call per repository; the line of each is where mypy must report ``not_a_column``.
MISSPELT = [f"db.{table}.create(not_a_column=1)" for table in DESIGN_TABLES] + [
    f"db.{table}.update('id', not_a_column=1)" for table in DESIGN_TABLES
]

#: Calls that must type-check: every repository, with its required columns.
VALID = """
    from typing import Any

    import mangostore
    from mangostore.records import Project, User

    db = mangostore.open(":memory:", encrypted=False)
    ann: User = db.users.create(username="ann", preferences={"theme": "dark"})
    site: Project = db.projects.create(user_id=ann.id, name="site", path="/site")
    db.projects.update(site.id, status="archived", metadata=None, last_accessed=1)
    db.users.update(ann.id, username="anne", security_profile={"mfa": True})
    db.terminal_sessions.create(user_id=ann.id, project_id=site.id)
    db.voice_profiles.create(user_id=ann.id, name="v", accuracy_score=1, is_active=True)
    db.command_history.create(user_id=ann.id, command="ls", command_type="voice")
    db.command_history.record(ann.id, "ls", command_type="keyboard", exit_code=0)
    shell = db.terminal_sessions.open(ann.id, working_directory="/", session_data={"a": 1})
    db.terminal_sessions.record_activity(shell.id, working_directory="/tmp")
    kind = db.notification_types.create(name="n", category="system", template="t")
    db.notification_preferences.create(
        user_id=ann.id, notification_type_id=kind.id, delivery_methods=["desktop"]
    )
    note = db.notifications.create(
        user_id=ann.id, notification_type_id=kind.id, title="t", message="m", priority="high"
    )
    db.notification_actions.create(notification_id=note.id, action_type="auto", action_label="a")
    talk = db.ai_conversations.create(user_id=ann.id, context_type="voice")
    db.ai_memory.create(
        user_id=ann.id, conversation_id=talk.id, memory_type="fact", key_name="k", value_data=1
    )
    event = db.security_events.create(event_type="auth", severity="info", source_component="t")
    db.security_events.update(event.id, resolved=True, resolved_by=ann.id)
    db.permissions.create(user_id=ann.id, resource_type="ai", permission_type="read")
    db.user_sessions.create(user_id=ann.id, session_token="s", security_level="high")
    one = db.kg_entities.create(user_id=ann.id, entity_type="concept", name="a")
    two = db.kg_entities.create(user_id=ann.id, entity_type="concept", name="b")
    db.kg_relations.create(user_id=ann.id, subject_id=one.id, predicate="p", object_id=two.id)
    db.kg_observations.create(
        entity_id=one.id, user_id=ann.id, observation_type="fact", content="c"
    )
    db.kg_embeddings.create(
        entity_id=one.id, user_id=ann.id, dimensions=2, model_version="m",
        vector_data=bytearray(8),
    )
    loose: dict[str, Any] = {"username": "dynamic"}
    db.users.create(**loose)  # a dict is checked at run time only
"""

#: Every repository's create and update return its own record class.
RETURNS = [
    "from typing import assert_type",
    "from mangostore import records as r",
    *(
        f"assert_type(db.{table}.{call}, r.{RECORDS[table].__name__})"
        for table in DESIGN_TABLES
        for call in ("create(**loose)", "update('id', **loose)")
    ),
]

#: Calls a type checker must refuse, with the words of mypy's message for each.
WRONG = {
    'db.users.create(usernme="bob")': 'Unexpected keyword argument "usernme"',
    'db.users.create(email="bob@example.org")': 'Missing named argument "username"',
    'db.command_history.create(user_id="u", command="ls", command_type="typed")': (
        "has incompatible type \"Literal['typed']\""
    ),
    'db.voice_profiles.update("id", is_active="yes")': 'has incompatible type "str"',
    'db.users.update("id", id="other")': 'Unexpected keyword argument "id"',
    'db.command_history.record("u", "ls", exit_cod=0)': 'Unexpected keyword argument "exit_cod"',
    'db.terminal_sessions.open("u", status="closed")': 'Unexpected keyword argument "status"',
    'db.terminal_sessions.record_activity("id", last_activity=1)': (
        'Unexpected keyword argument "last_activity"'
    ),
    'db.security_events.update("id", severity="critical")': (
        'Unexpected keyword argument "severity"'
    ),
}


@dataclass(frozen=True)
class MypyReport:
    """mypy's errors for a snippet: the valid calls, then one wrong call a line."""

    output: str
    #: Line -> its error messages, one a line.
    errors: dict[int, str]
    #: Lines of the valid calls, at the top of the snippet.
    valid_lines: int


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> MypyReport:
    """What mypy, configured as for the package (strict), says of the calls above."""
    folder = tmp_path_factory.mktemp("typed")
    valid = [*textwrap.dedent(VALID).strip("\n").splitlines(), *RETURNS]
    snippet = folder / "snippet.py"
    snippet.write_text("\n".join([*valid, *MISSPELT, *WRONG]) + "\n", encoding="utf-8")
    out, err, _ = mypy_api.run(
        [
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(folder / "cache"),
            "--no-error-summary",
            str(snippet),
        ]
    )
    assert err == ""
    errors: dict[int, str] = {}
    for found in re.finditer(r"^[^:\n]*snippet\.py:(\d+): error: (.*)$", out, re.M):
        line = int(found.group(1))
        errors[line] = errors.get(line, "") + found.group(2) + "\n"
    return MypyReport(out, errors, len(valid))


def test_mypy_accepts_valid_calls_of_every_repository(mypy_report: MypyReport) -> None:
    wrong = {
        line: text for line, text in mypy_report.errors.items() if line <= mypy_report.valid_lines
    }
    assert wrong == {}, mypy_report.output


def test_mypy_refuses_an_unknown_field_in_every_create_and_update(
    mypy_report: MypyReport,
) -> None:
    first = mypy_report.valid_lines + 1
    for offset, call in enumerate(MISSPELT):
        message = mypy_report.errors.get(first + offset, "")
        assert 'Unexpected keyword argument "not_a_column"' in message, (call, mypy_report.output)


def test_mypy_refuses_misspelt_missing_and_mistyped_fields(mypy_report: MypyReport) -> None:
    first = mypy_report.valid_lines + 1 + len(MISSPELT)
    for offset, (call, expected) in enumerate(WRONG.items()):
        assert expected in mypy_report.errors.get(first + offset, ""), (call, mypy_report.output)
    assert 'did you mean "username"' in mypy_report.errors[first], mypy_report.output
