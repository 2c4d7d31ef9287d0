"""``mangostore demo``: the whole story of mangostore on throwaway databases, with no prompts.

The tour is the list :data:`STEPS`; each step is a small function taking the
shared :class:`~mangostore.cli.demo_steps.Tour`. A feature shows itself by adding a
step. Everything lives in a temporary folder that is deleted at the end, also when a
step fails or the tour is interrupted; servers listen on loopback only, on ports the
system chose, and are stopped before the folder goes.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import click
from rich.console import Console
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

import mangostore
from mangostore.cli.common import CommandError, console
from mangostore.cli.demo_steps import (
    DEMO_EMAIL,
    DEMO_PASSPHRASE,
    DEMO_PASSWORD,
    Step,
    Tour,
    api_request,
    backup_and_restore,
    clean_up,
    new_id,
    now_ms,
    quiet_hours,
    stats_with_recommendations,
    sync_through_server,
)
from mangostore.cli.output import emit_json, json_option
from mangostore.errors import WrongPassphraseError

__all__ = ["DEMO_EMAIL", "DEMO_PASSPHRASE", "STEPS", "demo"]


def create_database(tour: Tour) -> None:
    """Create the encrypted database with a fixed, printed passphrase."""
    # The recovery key is thrown away with the database; `mangostore init` is where
    # it is shown.
    tour.db, _recovery_key = mangostore.create(tour.path, DEMO_PASSPHRASE)
    tour.out.print(f"Database: {tour.path}")
    tour.out.print(f"Demo passphrase (for this throwaway database only): {DEMO_PASSPHRASE}")
    tour.out.print(f"Schema version {tour.db.schema_version}; a recovery key was made too.")


def add_user(tour: Tour) -> None:
    """Write one user row."""
    db = tour.database()
    user_id, now = new_id(), now_ms()
    db.execute(
        "INSERT INTO users (id, username, email, created_at, updated_at, preferences) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (user_id, "ada", DEMO_EMAIL, now, now, json.dumps({"theme": "dark", "voice": True})),
    )
    tour.ids["user"] = user_id
    tour.out.print(f"users: ada <{DEMO_EMAIL}>  id {user_id}")


def add_project(tour: Tour) -> None:
    """Write one project row owned by the user."""
    db = tour.database()
    project_id, now = new_id(), now_ms()
    db.execute(
        "INSERT INTO projects (id, user_id, name, display_name, path, type, created_at, "
        "updated_at, last_accessed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            project_id,
            tour.ids["user"],
            "mango",
            "Mango terminal",
            "/home/ada/code/mango",
            "python",
            now,
            now,
            now,
        ),
    )
    tour.ids["project"] = project_id
    tour.out.print(f"projects: mango  id {project_id}")


def add_commands(tour: Tour) -> None:
    """Write a few command-history rows in one transaction."""
    db = tour.database()
    start = now_ms()
    commands = [
        ("git status", "keyboard", 0, None, 0),
        ("run the tests", "voice", 0, 0.93, 0),
        ("ruff check --fix", "ai", 1, None, 1),
    ]
    with db.transaction():
        for offset, (command, kind, exit_code, confidence, suggested) in enumerate(commands):
            db.execute(
                "INSERT INTO command_history (id, user_id, project_id, command, command_type, "
                "exit_code, working_directory, timestamp, voice_confidence, ai_suggested) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new_id(),
                    tour.ids["user"],
                    tour.ids["project"],
                    command,
                    kind,
                    exit_code,
                    "/home/ada/code/mango",
                    start + offset,
                    confidence,
                    suggested,
                ),
            )
    tour.out.print(f"command_history: {len(commands)} rows, committed together")


def read_back(tour: Tour) -> None:
    """Read the rows back with a join and show them."""
    rows = tour.database().query(
        "SELECT u.username, p.name AS project, c.command, c.command_type, c.exit_code "
        "FROM command_history AS c JOIN users AS u ON u.id = c.user_id "
        "JOIN projects AS p ON p.id = c.project_id WHERE c.user_id = ? ORDER BY c.timestamp",
        (tour.ids["user"],),
    )
    table = Table(title="Command history")
    for column in ("User", "Project", "Command", "Type", "Exit"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text(str(value)) for value in row))
    tour.out.print(table)


def check_on_disk(tour: Tour) -> None:
    """Close, look for the e-mail in the raw files, and reopen (a wrong passphrase fails)."""
    tour.database().close()
    tour.db = None
    files = [p for p in tour.folder.iterdir() if p.name.startswith(tour.path.name)]
    raw = b"".join(p.read_bytes() for p in files if p.is_file())
    if DEMO_EMAIL.encode() in raw:
        raise CommandError("the demo found plaintext in the database files")
    tour.out.print(f"'{DEMO_EMAIL}' appears nowhere in the {len(raw):,} bytes on disk.")
    try:
        mangostore.open(tour.path, "not the passphrase", create=False).close()
    except WrongPassphraseError as exc:
        tour.out.print(f"A wrong passphrase is refused: {exc}")
    else:
        raise CommandError("the demo database opened with a wrong passphrase")
    tour.db = mangostore.open(tour.path, DEMO_PASSPHRASE, create=False)
    count = tour.db.query("SELECT count(*) FROM command_history")[0][0]
    tour.out.print(f"Reopened with the passphrase: {count} command_history rows are there.")


def knowledge_and_memory(tour: Tour) -> None:
    """Build a small graph, change a single-valued fact, search it with the
    explanation of the answer; remember and recall."""
    db, user = tour.database(), tour.ids["user"]
    kg = db.kg
    kg.declare_predicate("preferred_shell", single_valued=True)
    me = kg.upsert_entity(user, "person", "Ada").entity
    project = kg.upsert_entity(user, "project", "mango", description="voice terminal").entity
    kg.relate(me, "works_on", project)
    kg.relate(me, "preferred_shell", kg.upsert_entity(user, "command", "bash").entity)
    kg.relate(me, "preferred_shell", kg.upsert_entity(user, "command", "zsh").entity)
    again = kg.upsert_entity(user, "person", "  ADA ")
    tour.out.print(f"'  ADA ' matched the existing entity: {not again.created}")
    question = "which shell does Ada prefer"
    hits = kg.search(user, question, k=3, explain=True)
    tour.out.print(f"Search: {question!r}")
    for number, hit in enumerate(hits, 1):
        tour.out.print(Text(f"  {number}. {hit.entity.name}  confidence {hit.confidence:.2f}"))
    if hits and hits[0].explanation is not None:
        why = hits[0].explanation
        # Evidence names entities by id; the demo shows their names.
        names = {e.id: e.name for e in db.kg_entities.find_by_user(user)}
        parts = ", ".join(f"{name} #{c.rank}" for name, c in why.components.items())
        factors = ", ".join(f"{name} {value:.2f}" for name, value in why.factors.items())
        tour.out.print(Text(f"  Why {hits[0].entity.name}: retrievers {parts}; factors {factors}"))
        for evidence in why.evidence:
            if evidence.text:
                text = " | ".join(evidence.text.splitlines())
                for entity_id, name in names.items():
                    text = text.replace(entity_id, name)
                tour.out.print(Text(f"    {evidence.retriever} found {evidence.kind}: {text}"))
    db.memory.remember(user, "editor", "helix", memory_type="preference")
    db.memory.remember(user, "editor", "neovim", memory_type="preference")
    (recalled,) = db.memory.recall(user, "editor")
    history = db.memory.history(user, "editor")
    tour.out.print(
        f"Memory 'editor' is {recalled.memory.value_data!r}; "
        f"{len(history)} superseded value kept as history."
    )


def login_and_permissions(tour: Tour) -> None:
    """Make a user with a password, log in, grant one permission and check two."""
    db, project = tour.database(), tour.ids["project"]
    ops = db.auth.create_user_with_password("ops", DEMO_PASSWORD)
    login = db.auth.login("ops", DEMO_PASSWORD, ip_address="127.0.0.1")
    who, _session = db.sessions.validate(login.token)
    db.access.grant(ops.id, "project", project, "read")
    can_read = db.access.check(ops.id, "project", project, "read")
    can_write = db.access.check(ops.id, "project", project, "write")
    tour.out.print(f"Password of 'ops' (demo only): {DEMO_PASSWORD}")
    tour.out.print(f"{who.username} logged in; may read: {can_read}, may write: {can_write}.")


def verify_audit(tour: Tour) -> None:
    """Verify the audit log's hash chain."""
    db = tour.database()
    kinds = db.query(
        "SELECT event_type, count(*) FROM security_events GROUP BY event_type ORDER BY 1"
    )
    listed = ", ".join(f"{kind} x{count}" for kind, count in kinds)
    tour.out.print(Text(f"Security events: {listed}"))
    report = db.audit.verify()
    tour.out.print(f"Audit log: {report.events_checked} events, chain verified: {report.ok}.")
    if not report.ok:
        raise CommandError("the demo's audit chain did not verify")


#: The tour, in order.
STEPS: list[Step] = [
    Step("Create an encrypted database", create_database),
    Step("Write a user", add_user),
    Step("Write a project", add_project),
    Step("Write command history", add_commands),
    Step("Read it back", read_back),
    Step("Look at the file on disk", check_on_disk),
    Step("Knowledge graph search, explained, and memory", knowledge_and_memory),
    Step("A notification held through quiet hours", quiet_hours),
    Step("Login and permissions", login_and_permissions),
    Step("Two devices syncing through a local sync server", sync_through_server),
    Step("Backup, verify, restore", backup_and_restore),
    Step("The HTTP API answers", api_request),
    Step("The audit chain", verify_audit),
    Step("Stats with recommendations", stats_with_recommendations),
    Step("Clean up", clean_up),
]


@click.command()
@json_option
def demo(as_json: bool) -> None:
    """Tour mangostore on throwaway encrypted databases; asks nothing.

    Two devices sync through a sync server on loopback; a backup is verified and
    restored; the HTTP API answers a request. Everything lives in a temporary folder
    that is deleted at the end, also on failure or Ctrl-C. With --json, each step's
    title and what it printed are given as JSON instead.
    """
    out = console()
    steps: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="mangostore-demo-") as folder:
        tour = Tour(out=out, folder=Path(folder))
        try:
            for number, step in enumerate(STEPS, start=1):
                if as_json:
                    # Each step prints into a buffer that becomes its "output" lines.
                    buffer = io.StringIO()
                    tour.out = Console(file=buffer, width=100, highlight=False, markup=False)
                    step.run(tour)
                    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
                    steps.append({"step": number, "title": step.title, "output": lines})
                else:
                    out.print(Rule(f"{number}. {step.title}"))
                    step.run(tour)
        finally:
            tour.clean_up()
    if as_json:
        emit_json({"steps": steps, "folder": folder, "deleted": not Path(folder).exists()})
        return
    out.print(f"Done: {folder} was deleted.", style="green")
