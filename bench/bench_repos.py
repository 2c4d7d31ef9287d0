"""Repository benchmarks: typed records against bare sqlcipher3 doing the same work.

Every repository figure has a baseline run straight through ``sqlcipher3`` on the same
encrypted file, in the same run, on a raw connection keyed with the database's page key:

- ``repo get``: ``db.users.get(id)`` next to selecting the same columns by id and
  building a dict;
- ``repo find_by_user``: ``db.projects.find_by_user`` for a user with 50 projects next
  to the same select building 50 dicts (and, as a floor, returning the bare tuples);
- ``repo create``: ``db.users.create`` (one row, its own transaction) next to
  ``BEGIN IMMEDIATE; INSERT; COMMIT`` with the writer's pragmas;
- ``repo create_many``: ``Config.rows`` command-history rows in one transaction next to
  ``executemany`` between ``BEGIN IMMEDIATE`` and ``COMMIT``;
- ``repo decrypt``: ``db.projects.get`` of rows whose ``security_config`` is NULL and
  of rows where it is sealed, each next to the same bare select, which leaves the
  envelope sealed: the difference is the cost of opening it.

Both sides get the same inputs: ids and timestamps are made before timing starts, so the
repository is not charged for making UUIDs and the baselines are not spared it.
The database is opened with the cheapest allowed KDF; opening is not measured here.
"""

from __future__ import annotations

import itertools
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uuid6

import mangostore
from bench.harness import Config, Measurement, Suite, raw_connection
from mangostore import KdfParams, Settings
from mangostore.records import Project, User
from mangostore.repos.spec import TableSpec, table_spec

PASSPHRASE = "bench: correct horse battery staple"
#: The cheapest Argon2id parameters mangostore accepts: setup only.
FAST_KDF = KdfParams(memory_kib=19_456, iterations=2, parallelism=1)
#: Projects of the user whose projects ``find_by_user`` fetches.
PROJECTS_PER_USER = 50
#: Users owning the projects with a sealed ``security_config`` (one data key each).
SECRET_OWNERS = 10
SECURITY_CONFIG = {
    "allowed_commands": ["git", "make", "pytest"],
    "denied_paths": ["/etc", "~/.ssh"],
    "require_confirmation": True,
}

USERS = table_spec(User)
PROJECTS = table_spec(Project)
USER_COLUMNS = ("id", "username", "email", "created_at", "updated_at")
COMMAND_COLUMNS = ("id", "user_id", "command", "exit_code", "working_directory", "timestamp")


def _select_by(spec: TableSpec, column: str) -> str:
    # The same statement the repository prepares: every column, in record order.
    return f"SELECT {spec.select_list} FROM {spec.quoted_table} WHERE {column} = ?"


def _insert(table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


def run(config: Config) -> list[Measurement]:
    """Seed an encrypted database in a temporary folder, run every benchmark, return the rows."""
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp:
        path = Path(tmp) / "repos.db"
        settings = Settings(kdf=FAST_KDF)
        with mangostore.create(path, passphrase=PASSPHRASE, settings=settings).db as db:
            assert db.keyring is not None
            page_key = db.keyring.subkey("page")
            seed = _seed(db, config)
            reader = raw_connection(path, page_key)
            writer = raw_connection(path, page_key, writer=True)
            try:
                results = _bench_get(config, db, reader, seed["users"])
                results += _bench_find_by_user(config, db, reader, seed["owner"])
                results += _bench_create(config, db, writer)
                results += _bench_create_many(config, db, writer, seed["owner"])
                results += _bench_decrypt(config, db, reader, seed["plain"], seed["sealed"])
            finally:
                reader.close()
                writer.close()
    return results


# -- data -------------------------------------------------------------------------------


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _new_id() -> str:
    return str(uuid6.uuid7())


def _user_rows(count: int) -> list[tuple[Any, ...]]:
    """Make ``count`` new users rows (``USER_COLUMNS``)."""
    now = _now_ms()
    rows = []
    for _ in range(count):
        uid = _new_id()
        rows.append((uid, f"user-{uid}", f"{uid}@example.com", now, now))
    return rows


def _command_rows(user_id: str, count: int) -> list[tuple[Any, ...]]:
    """Make ``count`` new command-history rows (``COMMAND_COLUMNS``)."""
    now = _now_ms()
    return [
        (_new_id(), user_id, f"git commit -m 'change {n}'", n % 3, "/home/me/src", now + n)
        for n in range(count)
    ]


def _seed(db: mangostore.Database, config: Config) -> dict[str, Any]:
    """Fill the database through its repositories; return the ids the benchmarks use."""
    users = db.users.create_many(
        dict(zip(USER_COLUMNS, r, strict=True)) for r in _user_rows(config.rows)
    )
    owner = users[0].id
    db.projects.create_many(
        {"user_id": owner, "name": f"project {n}", "path": f"/home/me/src/p{n}", "type": "python"}
        for n in range(PROJECTS_PER_USER)
    )
    count = max(10, min(config.rows // 10, 1_000))
    owners = [u.id for u in users[1 : SECRET_OWNERS + 1]] or [owner]
    plain = db.projects.create_many(
        {"user_id": owners[n % len(owners)], "name": f"plain {n}", "path": f"/plain/{n}"}
        for n in range(count)
    )
    sealed = db.projects.create_many(
        {
            "user_id": owners[n % len(owners)],
            "name": f"sealed {n}",
            "path": f"/sealed/{n}",
            "security_config": SECURITY_CONFIG,
        }
        for n in range(count)
    )
    return {
        "users": [u.id for u in users],
        "owner": owner,
        "plain": [p.id for p in plain],
        "sealed": [p.id for p in sealed],
    }


def _shuffled(ids: list[str]) -> list[str]:
    return random.Random(7).sample(ids, len(ids))  # the same order for every row


# -- reads ------------------------------------------------------------------------------


def _raw_get(conn: Any, sql: str, names: tuple[str, ...], ids: Iterator[str]) -> Callable[[], Any]:
    def once() -> dict[str, Any]:
        row = conn.execute(sql, (next(ids),)).fetchone()
        return dict(zip(names, row, strict=True))

    return once


def _raw_find(conn: Any, sql: str, names: tuple[str, ...], key: str) -> Callable[[], Any]:
    def once() -> list[dict[str, Any]]:
        return [dict(zip(names, row, strict=True)) for row in conn.execute(sql, (key,)).fetchall()]

    return once


def _raw_rows(conn: Any, sql: str, key: str) -> Callable[[], Any]:
    return lambda: conn.execute(sql, (key,)).fetchall()


def _bench_get(
    config: Config, db: mangostore.Database, reader: Any, ids: list[str]
) -> list[Measurement]:
    suite = Suite("repo get", config)
    order = _shuffled(ids)
    number = 2_000
    suite.add(
        "sqlcipher3 SELECT + dict",
        _raw_get(reader, _select_by(USERS, "id"), USERS.names, itertools.cycle(order)),
        number=number,
    )
    users = itertools.cycle(order)
    suite.add(
        "db.users.get",
        lambda: db.users.get(next(users), use_cache=False),
        number=number,
        baseline="sqlcipher3 SELECT + dict",
    )
    return suite.run()


def _bench_find_by_user(
    config: Config, db: mangostore.Database, reader: Any, owner: str
) -> list[Measurement]:
    suite = Suite("repo find_by_user", config)
    number = 300
    sql = _select_by(PROJECTS, "user_id")
    # Fifty dicts cost more to build than fifty slotted records, so the bare rows
    # without dicts are shown too: the floor under any way of returning them.
    suite.add(
        f"sqlcipher3 SELECT, {PROJECTS_PER_USER} tuples",
        _raw_rows(reader, sql, owner),
        number=number,
    )
    base = f"sqlcipher3 SELECT + {PROJECTS_PER_USER} dicts"
    suite.add(base, _raw_find(reader, sql, PROJECTS.names, owner), number=number)
    suite.add(
        f"db.projects.find_by_user, {PROJECTS_PER_USER} rows",
        lambda: db.projects.find_by_user(owner, use_cache=False),
        number=number,
        baseline=base,
    )
    return suite.run()


def _bench_decrypt(
    config: Config, db: mangostore.Database, reader: Any, plain: list[str], sealed: list[str]
) -> list[Measurement]:
    suite = Suite("repo decrypt", config)
    number = 2_000
    sql = _select_by(PROJECTS, "id")
    for label, ids in (("NULL", plain), ("sealed", sealed)):
        order = _shuffled(ids)
        base = f"sqlcipher3 SELECT + dict, security_config {label}"
        suite.add(
            base, _raw_get(reader, sql, PROJECTS.names, itertools.cycle(order)), number=number
        )
        projects = itertools.cycle(order)
        suite.add(
            f"db.projects.get, security_config {label}",
            lambda projects=projects: db.projects.get(next(projects), use_cache=False),
            number=number,
            baseline=base,
        )
    return suite.run()


# -- writes -----------------------------------------------------------------------------


def _bench_create(config: Config, db: mangostore.Database, writer: Any) -> list[Measurement]:
    suite = Suite("repo create", config)
    number = 1_000
    sql = _insert("users", USER_COLUMNS)

    def fresh() -> Iterator[tuple[Any, ...]]:
        return iter(_user_rows(config.total_calls(number)))

    raw_rows = fresh()

    def raw_once() -> None:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(sql, next(raw_rows))
        writer.execute("COMMIT")

    repo_rows = iter([dict(zip(USER_COLUMNS, r, strict=True)) for r in fresh()])
    suite.add("sqlcipher3 BEGIN/INSERT/COMMIT", raw_once, number=number)
    suite.add(
        "db.users.create",
        lambda: db.users.create(**next(repo_rows)),
        number=number,
        baseline="sqlcipher3 BEGIN/INSERT/COMMIT",
    )
    return suite.run()


def _bench_create_many(
    config: Config, db: mangostore.Database, writer: Any, owner: str
) -> list[Measurement]:
    suite = Suite("repo create_many", config)
    batches = config.total_calls(1)  # each call writes Config.rows rows
    sql = _insert("command_history", COMMAND_COLUMNS)
    raw_batches = iter([_command_rows(owner, config.rows) for _ in range(batches)])
    repo_batches = iter(
        [
            [dict(zip(COMMAND_COLUMNS, r, strict=True)) for r in _command_rows(owner, config.rows)]
            for _ in range(batches)
        ]
    )

    def raw_once() -> None:
        writer.execute("BEGIN IMMEDIATE")
        writer.executemany(sql, next(raw_batches))
        writer.execute("COMMIT")

    base = f"sqlcipher3 executemany, {config.rows:,} rows"
    suite.add(base, raw_once, number=1)
    suite.add(
        f"db.command_history.create_many, {config.rows:,} rows",
        lambda: db.command_history.create_many(next(repo_batches)),
        number=1,
        baseline=base,
    )
    return suite.run()
