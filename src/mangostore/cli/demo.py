"""``mangostore demo``: a guided tour on a throwaway database, with no prompts.

The tour is the list :data:`STEPS`; each step is a small function taking the
shared :class:`Tour`. A feature shows itself by adding a step.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import click
import uuid6
from rich.console import Console
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

import mangostore
from mangostore.cli.common import CommandError, console
from mangostore.cli.database import render_status
from mangostore.cli.output import emit_json, json_option
from mangostore.errors import WrongPassphraseError

#: The passphrase of the demo database. It is printed: the database is thrown away.
DEMO_PASSPHRASE = "mango-demo-passphrase"  # noqa: S105 (public by design)
DEMO_EMAIL = "ada@example.com"


@dataclass
class Tour:
    """What the steps share: where to write, the open database, the ids made so far."""

    out: Console
    folder: Path
    db: mangostore.Database | None = None
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The demo database file."""
        return self.folder / "demo.db"

    def database(self) -> mangostore.Database:
        """Return the open database (a step that needs one runs after ``create_database``)."""
        if self.db is None:
            raise CommandError("demo step ran before the database was created")
        return self.db


class Step(NamedTuple):
    """One step of the tour: a title and the function that performs it."""

    title: str
    run: Callable[[Tour], None]


def _new_id() -> str:
    return str(uuid6.uuid7())


def _now_ms() -> int:
    return int(time.time() * 1000)


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
    user_id, now = _new_id(), _now_ms()
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
    project_id, now = _new_id(), _now_ms()
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
    start = _now_ms()
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
                    _new_id(),
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
    """Build a small graph, change a single-valued fact, search it; remember and recall."""
    db, user = tour.database(), tour.ids["user"]
    kg = db.kg
    kg.declare_predicate("preferred_shell", single_valued=True)
    me = kg.upsert_entity(user, "person", "Ada").entity
    kg.relate(me, "preferred_shell", kg.upsert_entity(user, "command", "bash").entity)
    kg.relate(me, "preferred_shell", kg.upsert_entity(user, "command", "zsh").entity)
    again = kg.upsert_entity(user, "person", "  ADA ")
    tour.out.print(f"'  ADA ' matched the existing entity: {not again.created}")
    for hit in kg.search(user, "which shell does Ada prefer", k=3):
        tour.out.print(f"  search hit: {hit.entity.name} ({hit.score:.3f})")
    db.memory.remember(user, "editor", "helix", memory_type="preference")
    db.memory.remember(user, "editor", "neovim", memory_type="preference")
    (recalled,) = db.memory.recall(user, "editor")
    history = db.memory.history(user, "editor")
    tour.out.print(
        f"Memory 'editor' is {recalled.memory.value_data!r}; "
        f"{len(history)} superseded value kept as history."
    )


def notify_and_secure(tour: Tour) -> None:
    """Send a notification, log in with a password, check a permission, verify the audit log."""
    db, user, project = tour.database(), tour.ids["user"], tour.ids["project"]
    db.notify.register_type("build.failed", category="project", template="{project} failed")
    sent = db.notify.send(user, "build.failed", {"project": "site"}, project_id=project)
    methods = ", ".join(sent.delivery_methods or ()) or "no method"
    tour.out.print(f"Notification '{sent.message}' sent by {methods}.")
    ops = db.auth.create_user_with_password("ops", "a long demo password")
    login = db.auth.login("ops", "a long demo password", ip_address="127.0.0.1")
    who, _session = db.sessions.validate(login.token)
    db.access.grant(ops.id, "project", project, "read")
    can_read = db.access.check(ops.id, "project", project, "read")
    can_write = db.access.check(ops.id, "project", project, "write")
    tour.out.print(f"{who.username} logged in; may read: {can_read}, may write: {can_write}.")
    report = db.audit.verify()
    tour.out.print(f"Audit log: {report.events_checked} events, chain verified: {report.ok}.")


def sync_devices(tour: Tour) -> None:
    """Make a second device of this vault, edit on both, sync through a relay."""
    from mangostore.sync import MemoryRelay

    laptop, user = tour.database(), tour.ids["user"]
    relay = MemoryRelay()  # keeps only sealed batches, as the sync server would
    laptop.sync.enable(relay)
    desktop, _key = laptop.sync.new_device(tour.folder / "desktop.db", DEMO_PASSPHRASE)
    try:
        desktop.sync.connect(relay)
        laptop.sync.sync()
        desktop.sync.sync()
        tour.out.print(f"The desktop has {desktop.users.get(user).username!r} after one sync.")
        laptop.users.update(user, preferences={"theme": "light", "voice": True})
        desktop.users.update(user, preferences={"theme": "dark", "voice": True, "lang": "fr"})
        for device in (laptop, desktop, laptop):
            device.sync.sync()
        merged = desktop.users.get(user).preferences
        tour.out.print(f"Edited on both, merged key by key on both: {merged}")
        sealed = b"ada" not in relay.stored_bytes()
        tour.out.print(f"The relay holds no plaintext of the user name: {sealed}")
    finally:
        desktop.close()


def show_status(tour: Tour) -> None:
    """Show what `mangostore status` shows."""
    render_status(tour.out, tour.database().status())


#: The tour, in order.
STEPS: list[Step] = [
    Step("Create an encrypted database", create_database),
    Step("Write a user", add_user),
    Step("Write a project", add_project),
    Step("Write command history", add_commands),
    Step("Read it back", read_back),
    Step("Look at the file on disk", check_on_disk),
    Step("Knowledge graph and memory", knowledge_and_memory),
    Step("Notifications, login, permissions, audit", notify_and_secure),
    Step("Sync with a second device", sync_devices),
    Step("mangostore status", show_status),
]


@click.command()
@json_option
def demo(as_json: bool) -> None:
    """Tour mangostore on a throwaway encrypted database; asks nothing.

    The database lives in a temporary folder that is deleted at the end. With
    --json, each step's title and what it printed are given as JSON instead.
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
            if tour.db is not None:
                tour.db.close()
    if as_json:
        emit_json({"steps": steps, "deleted": True})
        return
    out.print("Done: the demo database was deleted.", style="green")
