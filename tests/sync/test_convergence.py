"""Sync converges: three devices of one vault end with the same rows.

A Hypothesis state machine drives three devices that share one relay. Each device has
its own clock, up to an hour away from the others and moved forward by the rules; the
way to the relay answers pulls with batches repeated, left out, cut short or shuffled,
and loses the answers of some pushes. The rules make users (names and e-mails are
unique), projects (two devices may take the same path), commands, knowledge-graph
entities with their relations and observations (two devices may learn of the same
thing), AI memories, erasures, and syncs of one device (also right after some writes).

Every ``converge`` step (and the end of every run) syncs every device until nothing
moves, then checks:

* every device holds the same rows of every synced table (``tables.SYNCED``, less the
  local columns), compared raw: ciphertext travels as it is, so it is the same bytes;
* no acknowledged write was lost: every row a device made is there unless a rule of
  docs/sync.md took it (deleted, its user erased, folded or renamed on a unique key,
  a child of a row deleted elsewhere, a knowledge-graph twin folded into the other);
  a column or JSON key written by one device only since the last convergence has that
  device's last value, and one written by several has one of their last values;
* nothing deleted comes back (nor a row a merge rule removed), and no synced table
  keeps a row of an erased user;
* ``PRAGMA foreign_key_check`` is empty, encrypted values open on every device, and
  every device's audit chain verifies.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.clock import ManualClock
from mangostore.errors import (
    ForeignKeyError,
    KeyManagementError,
    NotFoundError,
    SyncTransportError,
    UniqueConstraintError,
    ValidationError,
)
from mangostore.sql import quote_identifier
from mangostore.sync import MemoryRelay, Pulled
from mangostore.sync.batches import Batch
from mangostore.sync.tables import SYNCED, SYNCED_BY_NAME

DEVICES = 3
HOUR_MS = 3_600_000
#: The wall clock of the first device when a run starts; the others are up to an hour off.
START_MS = 1_750_000_000_000
#: The template devices are made earlier than any run's clocks.
TEMPLATE_MS = START_MS - 3 * HOUR_MS
#: Rounds over every device before a convergence that has not settled is a failure.
MAX_ROUNDS = 12

NAMES = ("ann", "bob", "cy")
EMAILS = ("ann@example.org", "bob@example.org", "cy@example.org")
PATHS = ("/src/app", "/src/lib")
PREF_KEYS = ("theme", "lang", "font")
META_KEYS = ("lang", "ci")
ENTITY_NAMES = ("kubectl", "docker", "vim")
MEMORY_KEYS = ("shell", "editor")
FAULTS = ("duplicate", "drop", "truncate", "gap", "reorder", "lost-answer")
#: Expected refusals of a write made on a device that lacks (or already has) what it
#: names, or that would seal data for an erased user: the write was not acknowledged,
#: so the model does not record it.
REFUSED = (
    ForeignKeyError,
    KeyManagementError,
    NotFoundError,
    UniqueConstraintError,
    ValidationError,
)

Key = tuple[str, str]  # (table, primary key)
_GONE = "<absent>"  # a JSON key removed, in the model of writes


class UnreliableTransport:
    """The way from one device to the shared relay, answering some pulls badly.

    While ``faults_left`` lasts, a pull answer has the faults of ``kinds`` applied:
    batches repeated, the whole answer lost, the answer cut short, a batch left out of
    the middle (a gap), the batches shuffled; and a push may reach the relay but lose
    its answer (the device sees a transport error and pushes again later). The engine
    must apply in cursor order, skip what it has, pull again after a gap, and lose
    nothing it pushed twice.
    """

    def __init__(self, relay: MemoryRelay) -> None:
        self.relay = relay
        self.rng = random.Random(0)
        self.kinds: frozenset[str] = frozenset()
        self.faults_left = 0

    def arm(self, seed: int, kinds: frozenset[str], count: int) -> None:
        """Spoil the next ``count`` non-empty pull answers with ``kinds``."""
        self.rng = random.Random(seed)
        self.kinds = kinds
        self.faults_left = count if kinds else 0

    def push(self, batch: Batch) -> int:
        """Store ``batch`` on the relay; the answer may be lost."""
        cursor = self.relay.push(batch)
        if "lost-answer" in self.kinds and self.faults_left > 0 and self.rng.random() < 0.5:
            self.faults_left -= 1
            raise SyncTransportError("the relay's answer to a push was lost")
        return cursor

    def pull(self, vault_id: str, after: int, limit: int) -> list[Pulled]:
        """The relay's answer, spoilt while faults are left."""
        page = self.relay.pull(vault_id, after, limit)
        if not page or self.faults_left <= 0:
            return page
        self.faults_left -= 1
        rng, kinds = self.rng, self.kinds
        if "drop" in kinds and rng.random() < 0.3:
            return []
        if "truncate" in kinds and len(page) > 1:
            page = page[: rng.randint(1, len(page) - 1)]
        if "gap" in kinds and len(page) > 1:
            del page[rng.randrange(len(page))]
        if "duplicate" in kinds:
            page = page + [rng.choice(page) for _ in range(rng.randint(1, 3))]
        if "reorder" in kinds:
            rng.shuffle(page)
        return page


@dataclass
class Model:
    """What the devices acknowledged, to judge what sync must keep."""

    #: Every row a device made, with the rows it refers to.
    made: dict[Key, tuple[Key, ...]] = field(default_factory=dict)
    #: Rows a device deleted (erased users among them).
    deleted: set[Key] = field(default_factory=set)
    erased: set[str] = field(default_factory=set)
    #: Since the last convergence: (table, pk, column or column/key) -> device -> value.
    writes: dict[tuple[str, str, str], dict[int, Any]] = field(default_factory=dict)

    def ids(self, table: str) -> list[str]:
        return [pk for (t, pk) in self.made if t == table]

    def write(self, device: int, table: str, pk: str, name: str, value: Any) -> None:
        self.writes.setdefault((table, pk, name), {})[device] = value


@dataclass
class Taken:
    """Rows the documented merge rules took, from every device's conflicts and
    redirects, and the knowledge graph's folds of twin entities."""

    orphaned: set[Key] = field(default_factory=set)
    folded: set[Key] = field(default_factory=set)
    renamed: set[Key] = field(default_factory=set)
    redirects: dict[Key, Key] = field(default_factory=dict)
    twins: set[Key] = field(default_factory=set)


def logical_content(db: mangostore.Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every synced table's rows, without the device-local columns, ordered by key."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with db.store.reading() as conn:
        for spec in SYNCED:
            names = [
                str(r[1])
                for r in conn.execute(f"PRAGMA table_info({quote_identifier(spec.name)})")
                if str(r[1]) not in spec.local_columns
            ]
            cols = ", ".join(quote_identifier(n) for n in names)
            rows = conn.execute(
                f"SELECT {cols} FROM {quote_identifier(spec.name)} "
                f"ORDER BY {quote_identifier(spec.key)}"
            ).fetchall()
            out[spec.name] = [tuple(r) for r in rows]
    return out


@dataclass(frozen=True)
class Template:
    """A closed device of one vault, copied for every run, and its recovery key (which
    opens it without the passphrase's key derivation: runs open many devices)."""

    path: Path
    recovery_key: str


def make_template(folder: Path, kdf_settings: Settings) -> list[Template]:
    """Three empty devices of one vault, as files (making them is the slow part:
    migrations)."""
    relay = MemoryRelay()
    first_path = folder / "device0.db"
    first, key = mangostore.create(
        first_path, passphrase=PASSPHRASE, settings=kdf_settings, clock=ManualClock(TEMPLATE_MS)
    )
    assert key is not None
    first.sync.enable(relay)
    made = [Template(first_path, key)]
    for i in range(1, DEVICES):
        path = folder / f"device{i}.db"
        other, other_key = first.sync.new_device(
            path, PASSPHRASE, settings=kdf_settings, clock=ManualClock(TEMPLATE_MS)
        )
        assert other_key is not None
        other.close()
        made.append(Template(path, other_key))
    first.close()
    return made


def copy_device(template: Path, folder: Path) -> Path:
    """Copy a closed device's database and keyring files into ``folder``."""
    for item in template.parent.glob(template.name + "*"):
        shutil.copy2(item, folder / item.name)
    return folder / template.name


device_index = st.integers(0, DEVICES - 1)
device_pair = st.permutations(range(DEVICES)).map(lambda p: (p[0], p[1]))
pick = st.integers(0, 1 << 16)
#: A device syncs right after a quarter of its writes: without it, Hypothesis runs that
#: leave the sync rules out share nothing before the end, and no edit or delete ever
#: meets another device's copy of the row.
sometimes = st.integers(0, 3).map(lambda n: n == 0)

Write = Callable[..., None]


def then_maybe_sync(write: Write) -> Write:
    """Run a write rule, then sync the device that wrote when ``then_sync`` says so."""

    @functools.wraps(write)
    def run(self: Convergence, *, then_sync: bool, **arguments: Any) -> None:
        write(self, **arguments)
        if then_sync:
            self.sync_device(arguments["device"])

    return run


class Convergence(RuleBasedStateMachine):
    """Three devices, one relay, unreliable pulls, skewed clocks."""

    def __init__(self, template: list[Template], device_settings: Settings) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="mango-sync-"))
        self.relay = MemoryRelay()
        self.model = Model()
        self.transports = [UnreliableTransport(self.relay) for _ in range(DEVICES)]
        self.clocks: list[ManualClock] = []
        self.dbs: list[mangostore.Database] = []
        self.device_settings = device_settings
        self.template = template

    # -- devices -----------------------------------------------------------------------------

    @initialize(
        skews=st.lists(st.integers(-HOUR_MS, HOUR_MS), min_size=DEVICES - 1, max_size=DEVICES - 1)
    )
    def open_devices(self, skews: list[int]) -> None:
        for i, skew in enumerate([0, *skews]):
            clock = ManualClock(START_MS + skew)
            path = copy_device(self.template[i].path, self.folder)
            db = mangostore.open(
                path,
                recovery_key=self.template[i].recovery_key,
                settings=self.device_settings,
                clock=clock,
            )
            db.sync.connect(self.transports[i])
            self.clocks.append(clock)
            self.dbs.append(db)

    def teardown(self) -> None:
        try:
            if self.dbs:
                self.converge()
        finally:
            for db in self.dbs:
                db.close()
            shutil.rmtree(self.folder, ignore_errors=True)

    def _choose(self, table: str, choice: int, device: int) -> str | None:
        """One of the rows of ``table`` the model knows, preferring those ``device`` has
        (a write to a row it lacks is refused, which tests little)."""
        ids = self.model.ids(table)
        with self.dbs[device].store.reading() as conn:
            here = [
                pk
                for pk in ids
                if conn.execute(
                    f"SELECT 1 FROM {quote_identifier(table)} WHERE id = ?", (pk,)
                ).fetchone()
            ]
        pool = here if here and choice % 8 else ids
        return pool[choice % len(pool)] if pool else None

    def _try(self, write: Callable[[], Any]) -> Any:
        """Run a write; ``None`` when the device refused it (not acknowledged)."""
        try:
            return write()
        except REFUSED:
            return None

    # -- time ---------------------------------------------------------------------------------

    @rule(device=device_index, ms=st.integers(1, 10 * 60_000))
    def advance_clock(self, device: int, ms: int) -> None:
        self.clocks[device].advance(ms)

    # -- users --------------------------------------------------------------------------------

    @rule(
        then_sync=sometimes,
        device=device_index,
        name=st.sampled_from(NAMES),
        email=st.none() | st.sampled_from(EMAILS),
        pref=st.none() | st.sampled_from(PREF_KEYS),
        secret=st.booleans(),
    )
    @then_maybe_sync
    def create_user(
        self, device: int, name: str, email: str | None, pref: str | None, secret: bool
    ) -> None:
        fields: dict[str, Any] = {"username": name, "email": email}
        if pref is not None:
            fields["preferences"] = {pref: device}
        if secret:
            fields["security_profile"] = {"pin": f"{name}-{device}"}
        user = self._try(lambda: self.dbs[device].users.create(**fields))
        if user is None:
            return
        self.model.made[("users", user.id)] = ()
        self.model.write(device, "users", user.id, "email", email)
        if pref is not None:
            self.model.write(device, "users", user.id, f"preferences/{pref}", device)

    @precondition(lambda self: bool(self.model.ids("users")))
    @rule(
        then_sync=sometimes,
        device=device_index,
        choice=pick,
        email=st.none() | st.sampled_from(EMAILS),
    )
    @then_maybe_sync
    def set_email(self, device: int, choice: int, email: str | None) -> None:
        user_id = self._choose("users", choice, device)
        assert user_id is not None
        if self._try(lambda: self.dbs[device].users.update(user_id, email=email)) is not None:
            self.model.write(device, "users", user_id, "email", email)

    @precondition(lambda self: bool(self.model.ids("users")))
    @rule(
        then_sync=sometimes,
        device=device_index,
        choice=pick,
        key=st.sampled_from(PREF_KEYS),
        value=st.none() | st.integers(0, 9),
    )
    @then_maybe_sync
    def edit_preferences(self, device: int, choice: int, key: str, value: int | None) -> None:
        """Add, change (``value``) or remove (``None``) one key of the preferences."""
        db = self.dbs[device]
        user_id = self._choose("users", choice, device)
        assert user_id is not None
        user = self._try(lambda: db.users.get(user_id))
        if user is None:
            return
        prefs = dict(user.preferences or {})
        if value is None:
            prefs.pop(key, None)
        else:
            prefs[key] = value
        if self._try(lambda: db.users.update(user_id, preferences=prefs)) is not None:
            self.model.write(
                device, "users", user_id, f"preferences/{key}", _GONE if value is None else value
            )

    @precondition(lambda self: bool(self.model.ids("users")))
    @rule(then_sync=sometimes, device=device_index, choice=pick, name=st.sampled_from(NAMES))
    @then_maybe_sync
    def rename_user(self, device: int, choice: int, name: str) -> None:
        user_id = self._choose("users", choice, device)
        assert user_id is not None
        self._try(lambda: self.dbs[device].users.update(user_id, username=name))

    @precondition(lambda self: bool(self.model.ids("users")))
    @rule(then_sync=sometimes, device=device_index, choice=pick)
    @then_maybe_sync
    def delete_user(self, device: int, choice: int) -> None:
        user_id = self._choose("users", choice, device)
        assert user_id is not None
        if self._try(lambda: self.dbs[device].users.delete(user_id)):
            self.model.deleted.add(("users", user_id))

    @precondition(lambda self: bool(self.model.ids("users")))
    @rule(then_sync=sometimes, device=device_index, choice=pick)
    @then_maybe_sync
    def erase_user(self, device: int, choice: int) -> None:
        db = self.dbs[device]
        user_id = self._choose("users", choice, device)
        assert user_id is not None
        if not db.query("SELECT 1 FROM users WHERE id = ?", (user_id,), use_cache=False):
            return
        db.privacy.erase_user(user_id)
        self.model.erased.add(user_id)
        self.model.deleted.add(("users", user_id))

    # -- projects and commands ----------------------------------------------------------------

    @precondition(lambda self: bool(self.model.ids("users")))
    @rule(
        then_sync=sometimes,
        device=device_index,
        choice=pick,
        path=st.sampled_from(PATHS),
        meta=st.none() | st.sampled_from(META_KEYS),
        secret=st.booleans(),
    )
    @then_maybe_sync
    def create_project(
        self, device: int, choice: int, path: str, meta: str | None, secret: bool
    ) -> None:
        user_id = self._choose("users", choice, device)
        assert user_id is not None
        self._make_project(device, user_id, path, meta, secret)

    @precondition(lambda self: bool(self.model.ids("users")))
    @rule(pair=device_pair, choice=pick, path=st.sampled_from(PATHS))
    def twin_projects(self, pair: tuple[int, int], choice: int, path: str) -> None:
        """Two devices make a project of one user at the same path before they sync."""
        user_id = self._choose("users", choice, pair[0])
        assert user_id is not None
        for device in pair:
            self._make_project(device, user_id, path, META_KEYS[device % 2], device == pair[0])

    def _make_project(
        self, device: int, user_id: str, path: str, meta: str | None, secret: bool
    ) -> None:
        fields: dict[str, Any] = {"user_id": user_id, "name": path.rsplit("/", 1)[-1]}
        fields["path"] = path
        if meta is not None:
            fields["metadata"] = {meta: device}
        if secret:
            fields["security_config"] = {"token": f"t{device}"}
        project = self._try(lambda: self.dbs[device].projects.create(**fields))
        if project is None:
            return
        self.model.made[("projects", project.id)] = (("users", user_id),)
        if meta is not None:
            self.model.write(device, "projects", project.id, f"metadata/{meta}", device)

    @precondition(lambda self: bool(self.model.ids("projects")))
    @rule(
        then_sync=sometimes,
        device=device_index,
        choice=pick,
        key=st.sampled_from(META_KEYS),
        value=st.none() | st.integers(0, 9),
    )
    @then_maybe_sync
    def edit_project_metadata(self, device: int, choice: int, key: str, value: int | None) -> None:
        db = self.dbs[device]
        project_id = self._choose("projects", choice, device)
        assert project_id is not None
        project = self._try(lambda: db.projects.get(project_id))
        if project is None:
            return
        meta = dict(project.metadata or {})
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
        if self._try(lambda: db.projects.update(project_id, metadata=meta)) is not None:
            self.model.write(
                device, "projects", project_id, f"metadata/{key}", _GONE if value is None else value
            )

    @precondition(lambda self: bool(self.model.ids("projects")))
    @rule(then_sync=sometimes, device=device_index, choice=pick)
    @then_maybe_sync
    def delete_project(self, device: int, choice: int) -> None:
        project_id = self._choose("projects", choice, device)
        assert project_id is not None
        if self._try(lambda: self.dbs[device].projects.delete(project_id)):
            self.model.deleted.add(("projects", project_id))

    @precondition(lambda self: bool(self.model.ids("users")))
    @rule(
        then_sync=sometimes,
        device=device_index,
        choice=pick,
        project=st.none() | pick,
        code=st.integers(0, 3),
    )
    @then_maybe_sync
    def run_command(self, device: int, choice: int, project: int | None, code: int) -> None:
        user_id = self._choose("users", choice, device)
        assert user_id is not None
        project_id = None if project is None else self._choose("projects", project, device)
        command = self._try(
            lambda: self.dbs[device].command_history.create(
                user_id=user_id,
                project_id=project_id,
                command=f"make -j{code}",
                exit_code=code,
                timestamp=self.clocks[device].now_ms(),
            )
        )
        if command is None:
            return
        parents: tuple[Key, ...] = (("users", user_id),)
        if project_id is not None:
            parents += (("projects", project_id),)
        self.model.made[("command_history", command.id)] = parents
        self.model.write(device, "command_history", command.id, "exit_code", code)

    @precondition(lambda self: bool(self.model.ids("command_history")))
    @rule(then_sync=sometimes, device=device_index, choice=pick, code=st.integers(0, 3))
    @then_maybe_sync
    def set_exit_code(self, device: int, choice: int, code: int) -> None:
        command_id = self._choose("command_history", choice, device)
        assert command_id is not None
        db = self.dbs[device]
        if self._try(lambda: db.command_history.update(command_id, exit_code=code)) is not None:
            self.model.write(device, "command_history", command_id, "exit_code", code)

    @precondition(lambda self: bool(self.model.ids("command_history")))
    @rule(then_sync=sometimes, device=device_index, choice=pick)
    @then_maybe_sync
    def delete_command(self, device: int, choice: int) -> None:
        command_id = self._choose("command_history", choice, device)
        assert command_id is not None
        if self._try(lambda: self.dbs[device].command_history.delete(command_id)):
            self.model.deleted.add(("command_history", command_id))

    # -- knowledge graph and memory ------------------------------------------------------------

    @precondition(lambda self: bool(self.model.ids("users")))
    @rule(then_sync=sometimes, device=device_index, choice=pick, name=st.sampled_from(ENTITY_NAMES))
    @then_maybe_sync
    def upsert_entity(self, device: int, choice: int, name: str) -> None:
        user_id = self._choose("users", choice, device)
        assert user_id is not None
        self._upsert_entity(device, user_id, name)

    @precondition(lambda self: bool(self.model.ids("users")))
    @rule(pair=device_pair, choice=pick, name=st.sampled_from(ENTITY_NAMES))
    def twin_entities(self, pair: tuple[int, int], choice: int, name: str) -> None:
        """Two devices learn of the same thing for one user before they sync."""
        user_id = self._choose("users", choice, pair[0])
        assert user_id is not None
        for device in pair:
            self._upsert_entity(device, user_id, name)

    def _upsert_entity(self, device: int, user_id: str, name: str) -> None:
        done = self._try(lambda: self.dbs[device].kg.upsert_entity(user_id, "command", name))
        if done is not None and done.created:
            self.model.made[("kg_entities", done.entity.id)] = (("users", user_id),)

    @precondition(lambda self: len(self.model.ids("kg_entities")) > 1)
    @rule(then_sync=sometimes, device=device_index, subject=pick, object=pick)
    @then_maybe_sync
    def relate(self, device: int, subject: int, object: int) -> None:
        """Relate an entity to another of the same user, as this device has them."""
        s = self._choose("kg_entities", subject, device)
        assert s is not None
        others = [
            str(r[0])
            for r in self.dbs[device].query(
                "SELECT o.id FROM kg_entities AS o JOIN kg_entities AS s "
                "ON s.user_id = o.user_id WHERE s.id = ? AND o.id <> s.id ORDER BY o.id",
                (s,),
                use_cache=False,
            )
            if ("kg_entities", str(r[0])) in self.model.made
        ]
        if not others:
            return
        o = others[object % len(others)]
        relation = self._try(lambda: self.dbs[device].kg.relate(s, "depends_on", o))
        if relation is not None and ("kg_relations", relation.id) not in self.model.made:
            self.model.made[("kg_relations", relation.id)] = (
                ("kg_entities", s),
                ("kg_entities", o),
            )

    @precondition(lambda self: bool(self.model.ids("kg_entities")))
    @rule(
        then_sync=sometimes,
        device=device_index,
        choice=pick,
        content=st.sampled_from(("fast", "noisy", "new")),
    )
    @then_maybe_sync
    def observe(self, device: int, choice: int, content: str) -> None:
        entity_id = self._choose("kg_entities", choice, device)
        assert entity_id is not None
        seen = self._try(lambda: self.dbs[device].kg.observe(entity_id, "fact", f"it is {content}"))
        if seen is not None and ("kg_observations", seen.id) not in self.model.made:
            self.model.made[("kg_observations", seen.id)] = (("kg_entities", entity_id),)

    @precondition(lambda self: bool(self.model.ids("kg_entities")))
    @rule(then_sync=sometimes, device=device_index, choice=pick)
    @then_maybe_sync
    def delete_entity(self, device: int, choice: int) -> None:
        entity_id = self._choose("kg_entities", choice, device)
        assert entity_id is not None
        try:
            self.dbs[device].kg.delete_entity(entity_id)
        except REFUSED:
            return
        self.model.deleted.add(("kg_entities", entity_id))

    @precondition(lambda self: bool(self.model.ids("users")))
    @rule(
        then_sync=sometimes,
        device=device_index,
        choice=pick,
        key=st.sampled_from(MEMORY_KEYS),
        value=pick,
    )
    @then_maybe_sync
    def remember(self, device: int, choice: int, key: str, value: int) -> None:
        user_id = self._choose("users", choice, device)
        assert user_id is not None
        memory = self._try(lambda: self.dbs[device].memory.remember(user_id, key, value % 5))
        if memory is not None and ("ai_memory", memory.id) not in self.model.made:
            self.model.made[("ai_memory", memory.id)] = (("users", user_id),)

    @precondition(lambda self: bool(self.model.ids("users")))
    @rule(then_sync=sometimes, device=device_index, choice=pick, key=st.sampled_from(MEMORY_KEYS))
    @then_maybe_sync
    def forget(self, device: int, choice: int, key: str) -> None:
        user_id = self._choose("users", choice, device)
        assert user_id is not None
        self._try(lambda: self.dbs[device].memory.forget(user_id, key))

    # -- sync ----------------------------------------------------------------------------------

    @rule(
        device=device_index,
        seed=st.integers(0, 1 << 16),
        faults=st.frozensets(st.sampled_from(FAULTS)),
    )
    def sync(self, device: int, seed: int, faults: frozenset[str]) -> None:
        self.transports[device].arm(seed, faults, count=3)
        self.sync_device(device)

    def sync_device(self, device: int) -> None:
        """Sync one device through its transport as it is armed."""
        try:
            self.dbs[device].sync.sync()
        except SyncTransportError:
            # The only error the transport makes: a push whose answer was lost.
            assert "lost-answer" in self.transports[device].kinds

    @rule()
    def converge(self) -> None:
        """Sync every device until nothing moves, then check every invariant.

        Nothing moves in a round over every device (with honest pulls) in which no
        device sent a change nor applied one: every change was on the relay before
        the round, and every device has pulled since.
        """
        for transport in self.transports:
            transport.arm(0, frozenset(), 0)
        for _round in range(MAX_ROUNDS):
            reports = [db.sync.sync() for db in self.dbs]
            if all(r.pushed_changes == 0 and r.applied == 0 for r in reports) and all(
                db.sync.status().pending_changes == 0 for db in self.dbs
            ):
                break
        else:
            pytest.fail(f"devices still had changes to exchange after {MAX_ROUNDS} rounds")
        self.check()
        self.model.writes.clear()

    # -- the invariants -----------------------------------------------------------------------

    def check(self) -> None:
        contents = [logical_content(db) for db in self.dbs]
        for table in contents[0]:
            for i in range(1, DEVICES):
                mine, theirs = set(contents[i][table]), set(contents[0][table])
                assert contents[i][table] == contents[0][table], (
                    f"{table} differs: only on device 0 {sorted(theirs - mine)}, "
                    f"only on device {i} {sorted(mine - theirs)}"
                )
        for i, db in enumerate(self.dbs):
            with db.store.reading() as conn:
                broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            assert not broken, f"device {i} has broken references: {[tuple(b) for b in broken]}"
            report = db.audit.verify()
            assert report.ok, f"device {i}'s audit chain: {report.reason}"
        present = self._present(contents[0])
        self._check_deletions(present)
        self._check_made(present)
        self._check_writes()
        self._check_decryption(present)

    def _present(self, content: dict[str, list[tuple[Any, ...]]]) -> set[Key]:
        keys = {spec.name: spec.key for spec in SYNCED}
        out: set[Key] = set()
        with self.dbs[0].store.reading() as conn:
            for table in content:
                for (pk,) in conn.execute(
                    f"SELECT {quote_identifier(keys[table])} FROM {quote_identifier(table)}"
                ):
                    out.add((table, str(pk)))
        return out

    def _check_deletions(self, present: set[Key]) -> None:
        back = self.model.deleted & present
        assert not back, f"deleted rows came back: {sorted(back)}"
        if not self.model.erased:
            return
        with self.dbs[0].store.reading() as conn:
            for spec in SYNCED:
                cols = {str(r[1]) for r in conn.execute(f"PRAGMA table_info({spec.name})")}
                if "user_id" not in cols:
                    continue
                for user_id in self.model.erased:
                    left = conn.execute(
                        f"SELECT count(*) FROM {quote_identifier(spec.name)} WHERE user_id = ?",
                        (user_id,),
                    ).fetchone()[0]
                    # field_keys keeps the record of a destroyed key (no foreign key).
                    if spec.name == "field_keys":
                        left = conn.execute(
                            "SELECT count(*) FROM field_keys WHERE user_id = ? "
                            "AND status <> 'destroyed'",
                            (user_id,),
                        ).fetchone()[0]
                    assert not left, f"{left} {spec.name} rows of an erased user are left"

    def _rules_taken(self) -> Taken:
        """What the documented rules did, as every device recorded it."""
        taken = Taken()
        for db in self.dbs:
            with db.store.reading() as conn:
                for kind, table, pk in conn.execute("SELECT kind, tbl, pk FROM sync_conflicts"):
                    key = (str(table), str(pk))
                    if kind == "orphan":
                        taken.orphaned.add(key)
                    elif SYNCED_BY_NAME[key[0]].unique_rule == "merge":
                        taken.folded.add(key)
                    else:
                        taken.renamed.add(key)
                for table, old, new in conn.execute(
                    "SELECT tbl, from_pk, to_pk FROM sync_redirects"
                ):
                    taken.redirects[(str(table), str(old))] = (str(table), str(new))
                taken.twins |= {
                    ("kg_entities", str(d))
                    for (d,) in conn.execute("SELECT drop_id FROM kg_merges")
                }
        return taken

    def _check_made(self, present: set[Key]) -> None:
        """Every row a device made is there, unless a documented rule took it."""
        taken = self._rules_taken()
        gone_for_good = (taken.orphaned | taken.folded) & present
        assert not gone_for_good, f"rows removed by a merge rule came back: {gone_for_good}"

        def parent_gone(parent: Key) -> bool:
            # A row folded into another on a unique key passes its children on: they
            # must follow it to the survivor, not be lost with it.
            while parent in taken.redirects:
                parent = taken.redirects[parent]
            # The graph's fold of twin entities moves their facts, and may merge two
            # facts into one: what it took is not checked here.
            return parent not in present or parent in taken.twins

        def may_be_gone(key: Key) -> bool:
            return (
                key in self.model.deleted
                or key in taken.folded
                or key in taken.twins
                or any(parent_gone(p) for p in self.model.made[key])
            )

        lost = [k for k in self.model.made if k not in present and not may_be_gone(k)]
        assert not lost, f"acknowledged rows lost: {lost}"

    def _check_writes(self) -> None:
        """A value written since the last convergence is the last one of a device that
        wrote it (the only device: its value)."""
        renamed = self._rules_taken().renamed
        for (table, pk, name), by_device in self.model.writes.items():
            row = self.dbs[0].query(
                f"SELECT * FROM {quote_identifier(table)} WHERE id = ?", (pk,), use_cache=False
            )
            if not row:
                continue  # the row is gone: checked by _check_made
            column, _, json_key = name.partition("/")
            value = row[0][column]
            if json_key:
                value = _json_object(value).get(json_key, _GONE)
            if (table, pk) in renamed:
                continue  # renamed on a unique clash: its e-mail was cleared
            allowed = set(by_device.values())
            assert value in allowed, (
                f"{table} {pk} {name} is {value!r}; the devices wrote {by_device!r} "
                "since the last convergence"
            )

    def _check_decryption(self, present: set[Key]) -> None:
        """Every device opens every encrypted value, to the same plaintext."""
        opened = []
        for db in self.dbs:
            values = []
            for table, pk in sorted(present):
                if table == "users":
                    values.append(db.users.get(pk).security_profile)
                elif table == "projects":
                    values.append(db.projects.get(pk).security_config)
            opened.append(values)
        assert all(values == opened[0] for values in opened)


def _json_object(text: Any) -> dict[str, Any]:
    """A JSON object column's value as a dict (``{}`` for NULL)."""
    return dict(json.loads(text)) if text else {}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> list[Template]:
    """Three empty devices of one vault, made once for every run of the machine."""
    folder = tmp_path_factory.mktemp("sync-template")
    return make_template(folder, Settings(kdf=FAST_KDF))


@pytest.mark.slow
# Thirty examples of thirty steps on three devices: about three minutes on a quiet
# two-core machine, past the suite's 300 s guard when the machine is shared.
@pytest.mark.timeout(900)
def test_devices_converge(template: list[Template], fast_settings: Settings) -> None:
    # Statement statistics are not what this test is about, and cost a tenth of it.
    quiet = dataclasses.replace(fast_settings, monitor_queries=False)

    class Machine(Convergence):
        def __init__(self) -> None:
            super().__init__(template, quiet)

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
