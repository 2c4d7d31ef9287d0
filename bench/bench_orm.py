"""Repositories against SQLAlchemy 2's ORM on the same file, and what field encryption costs.

SQLAlchemy is what a Python developer would otherwise pick, so every repository call is
timed next to the ORM doing the same work on the same unencrypted database file, in the
same run (and, as a floor, next to bare ``sqlcipher3``). The ORM maps the same tables,
runs on the same driver (``sqlcipher3``, so the same SQLite) and opens its connections
with the same foreign-key and durability settings. Both sides
get the same inputs: ids and timestamps are made before timing starts.

- ``orm get``: ``db.users.get(id)`` uncached and cached, next to ``session.get`` on an
  emptied identity map (so the ORM runs its SELECT too).
- ``orm list``: the 50 projects of one user, ``db.projects.find_by_user`` uncached and
  cached, next to ``session.scalars(select(...))``.
- ``orm create``: :data:`ROWS_PER_TRANSACTION` rows in one transaction, per row:
  ``db.<table>.create`` inside ``db.transaction()`` next to ``session.add`` of each
  object and one ``commit`` (the unit of work), for ``projects`` (no triggers) and
  ``command_history`` (whose triggers keep its search index and statistics).
- ``orm update``: :data:`ROWS_PER_TRANSACTION` users a transaction, per row:
  ``db.users.update(id, preferences=...)`` next to loading each user, setting the
  attribute and one ``commit``.
- ``orm create_many``: ``Config.rows`` rows in one call: ``create_many`` next to bare
  ``executemany`` of the same rows (the goal is at most 1.5 times), the ORM's bulk
  ``session.execute(insert(Model), rows)`` and ``session.add_all``.
- ``field encryption`` (an encrypted database, cheapest KDF): an update of an
  encrypted JSON column next to the same update of a plain JSON column with the same
  160-byte value, :data:`ROWS_PER_TRANSACTION` a transaction, per row (the difference
  is what encryption costs the user): ``users.update`` of ``security_profile`` against
  ``preferences`` (one user's row; every user has their own key), and
  ``projects.update`` of ``security_config`` against ``metadata`` (one person's
  projects: one key, the owner looked up per row); and ``FieldCipher.encrypt`` alone
  inside a transaction, next to a bare AES-256-GCM encrypt of the same bytes.

SQLAlchemy is a benchmark-only dependency, the ``bench`` extra:
``pip install 'mangostore[bench]'`` (in this checkout: ``.venv/bin/pip install
'sqlalchemy>=2'``). Without it the ORM rows are left out and a line says how to add them.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlcipher3
import uuid6
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import mangostore
from bench.harness import Config, Measurement, Suite, raw_connection
from mangostore import KdfParams, Settings

try:
    import sqlalchemy
    from sqlalchemy import orm as sa_orm
except ImportError:  # the bench extra is not installed
    sqlalchemy = None  # type: ignore[assignment]
    sa_orm = None  # type: ignore[assignment]

INSTALL = (
    "pip install 'mangostore[bench]' (in this checkout: .venv/bin/pip install 'sqlalchemy>=2')"
)
PASSPHRASE = "bench: correct horse battery staple"
#: The cheapest Argon2id parameters mangostore accepts: setup only.
FAST_KDF = KdfParams(memory_kib=19_456, iterations=2, parallelism=1)
#: Rows written per transaction in the create and update cases (figures are per row).
ROWS_PER_TRANSACTION = 50
#: Projects of the user whose projects are listed.
PROJECTS_PER_USER = 50
#: A 160-byte JSON value (serialised compactly), for the updates.
VALUE = {"theme": "dark", "keys": "emacs", "note": "x" * 119}
assert len(json.dumps(VALUE, separators=(",", ":"))) == 160
COMMAND_COLUMNS = ("id", "user_id", "command", "exit_code", "working_directory", "timestamp")
PROJECT_COLUMNS = ("id", "user_id", "name", "path", "type", "created_at", "updated_at")


def run(config: Config) -> list[Measurement]:
    """Seed the databases in a temporary folder, run every case, return the rows."""
    if sqlalchemy is None:
        print(
            "bench_orm: SQLAlchemy 2 is not installed, so the ORM rows are left out; "
            f"add them with: {INSTALL}",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp:
        results = _plain_file(Path(tmp) / "orm.db", config)
        results += _encrypted_file(Path(tmp) / "fields.db", config)
    return results


# -- data -------------------------------------------------------------------------------


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _new_id() -> str:
    return str(uuid6.uuid7())


def _users(count: int) -> list[dict[str, Any]]:
    now = _now_ms()
    made = []
    for _ in range(count):
        uid = _new_id()
        made.append(
            {"id": uid, "username": f"user-{uid}", "email": f"{uid}@example.com",
             "created_at": now, "updated_at": now}
        )  # fmt: skip
    return made


def _commands(owner: str, count: int) -> list[dict[str, Any]]:
    now = _now_ms()
    return [
        dict(
            zip(
                COMMAND_COLUMNS,
                (_new_id(), owner, f"git commit -m 'change {n}'", n % 3, "/home/me", now + n),
                strict=True,
            )
        )
        for n in range(count)
    ]


def _projects(owner: str, count: int) -> list[dict[str, Any]]:
    now = _now_ms()
    made = []
    for _ in range(count):
        pid = _new_id()
        values = (pid, owner, f"project {pid}", f"/src/{pid}", "python", now, now)
        made.append(dict(zip(PROJECT_COLUMNS, values, strict=True)))
    return made


def _per_row(results: list[Measurement], rows: int) -> list[Measurement]:
    """Turn per-call figures of calls writing ``rows`` rows into per-row figures."""
    return [
        dataclasses.replace(
            m,
            median_us=m.median_us / rows,
            p95_us=m.p95_us / rows,
            min_us=m.min_us / rows,
            max_us=None if m.max_us is None else m.max_us / rows,
        )
        for m in results
    ]


# -- the unencrypted file: repositories, SQLAlchemy and bare sqlcipher3 -------------------


def _plain_file(path: Path, config: Config) -> list[Measurement]:
    with mangostore.create(path, encrypted=False) as (db, _):
        users = db.users.create_many(_users(config.rows))
        owner = users[0].id
        db.projects.create_many(_projects(owner, PROJECTS_PER_USER))
        ids = [u.id for u in users]
        raw = raw_connection(path, None, writer=True)
        orm = _Orm(path) if sqlalchemy is not None else None
        try:
            results = _bench_get(config, db, raw, orm, ids)
            results += _bench_list(config, db, raw, orm, owner)
            results += _bench_create(config, db, raw, orm, owner)
            results += _bench_update(config, db, raw, orm, ids)
            results += _bench_create_many(config, db, raw, orm, owner)
        finally:
            raw.close()
            if orm is not None:
                orm.close()
    return results


class _Orm:
    """SQLAlchemy 2 ORM models of the three tables, on an engine for ``path``."""

    def __init__(self, path: Path) -> None:
        # Columns without annotations: this module's postponed annotations would hide
        # the ORM's Mapped[...] types from it.
        from sqlalchemy import JSON, Integer, String, event
        from sqlalchemy.orm import DeclarativeBase, mapped_column

        class Base(DeclarativeBase):
            pass

        class User(Base):
            __tablename__ = "users"
            id = mapped_column(String, primary_key=True)
            username = mapped_column(String)
            email = mapped_column(String)
            created_at = mapped_column(Integer)
            updated_at = mapped_column(Integer)
            last_login = mapped_column(Integer)
            preferences = mapped_column(JSON, nullable=True)
            security_profile = mapped_column(JSON, nullable=True)
            voice_profile_id = mapped_column(String)

        class Project(Base):
            __tablename__ = "projects"
            id = mapped_column(String, primary_key=True)
            user_id = mapped_column(String)
            name = mapped_column(String)
            display_name = mapped_column(String)
            path = mapped_column(String)
            type = mapped_column(String)
            status = mapped_column(String)
            created_at = mapped_column(Integer)
            updated_at = mapped_column(Integer)
            last_accessed = mapped_column(Integer)
            metadata_ = mapped_column("metadata", JSON, nullable=True)
            security_config = mapped_column(JSON, nullable=True)
            git_config = mapped_column(JSON, nullable=True)

        class Command(Base):
            __tablename__ = "command_history"
            id = mapped_column(String, primary_key=True)
            user_id = mapped_column(String)
            project_id = mapped_column(String)
            terminal_session_id = mapped_column(String)
            command = mapped_column(String)
            command_type = mapped_column(String)
            execution_time = mapped_column(Integer)
            exit_code = mapped_column(Integer)
            output = mapped_column(String)
            working_directory = mapped_column(String)
            timestamp = mapped_column(Integer)

        self.User, self.Project, self.Command = User, Project, Command
        # The driver mangostore uses, so both run the same SQLite (the standard
        # library's may be too old for the schema's full-text options).
        self.engine = sqlalchemy.create_engine(f"sqlite:///{path}", module=sqlcipher3)

        @event.listens_for(self.engine, "connect")
        def setup(dbapi_connection: Any, _record: Any) -> None:
            # The settings of mangostore's writer that change what a write costs.
            for pragma in ("foreign_keys = ON", "synchronous = NORMAL", "busy_timeout = 5000"):
                dbapi_connection.execute(f"PRAGMA {pragma}")

        self.session = sa_orm.Session(self.engine)

    def close(self) -> None:
        self.session.close()
        self.engine.dispose()


def _bench_get(
    config: Config, db: mangostore.Database, raw: Any, orm: _Orm | None, ids: list[str]
) -> list[Measurement]:
    suite = Suite("orm get", config)
    number = 2_000
    sql = "SELECT * FROM users WHERE id = ?"
    base = "sqlcipher3 SELECT + dict"
    order = itertools.cycle(ids)
    names = tuple(db.users.spec.names)
    suite.add(
        base,
        lambda: dict(zip(names, raw.execute(sql, (next(order),)).fetchone(), strict=True)),
        number=number,
    )
    if orm is not None:
        session, user = orm.session, orm.User

        def orm_get() -> Any:
            session.expunge_all()  # an empty identity map: the ORM runs its SELECT
            return session.get(user, next(order))

        suite.add("sqlalchemy session.get", orm_get, number=number)
        base = "sqlalchemy session.get"
    suite.add(
        "db.users.get, uncached",
        lambda: db.users.get(next(order), use_cache=False),
        number=number,
        baseline=base,
    )
    one = ids[0]
    suite.add("db.users.get, cached", lambda: db.users.get(one), number=number, baseline=base)
    results = suite.run()
    if orm is not None:
        orm.session.rollback()  # end its read transaction
    return results


def _bench_list(
    config: Config, db: mangostore.Database, raw: Any, orm: _Orm | None, owner: str
) -> list[Measurement]:
    suite = Suite("orm list", config)
    number = 300
    sql = "SELECT * FROM projects WHERE user_id = ? ORDER BY created_at, id"
    names = tuple(db.projects.spec.names)
    base = f"sqlcipher3 SELECT + {PROJECTS_PER_USER} dicts"
    suite.add(
        base,
        lambda: [
            dict(zip(names, row, strict=True)) for row in raw.execute(sql, (owner,)).fetchall()
        ],
        number=number,
    )
    if orm is not None:
        session, project = orm.session, orm.Project
        query = (
            sqlalchemy.select(project)
            .where(project.user_id == owner)
            .order_by(project.created_at, project.id)
        )

        def orm_list() -> Any:
            session.expunge_all()
            return session.scalars(query).all()

        base = f"sqlalchemy select, {PROJECTS_PER_USER} objects"
        suite.add(base, orm_list, number=number)
    order = ["created_at", "id"]
    suite.add(
        f"db.projects.find_by_user, {PROJECTS_PER_USER} rows, uncached",
        lambda: db.projects.find_by_user(owner, order_by=order, use_cache=False),
        number=number,
        baseline=base,
    )
    suite.add(
        f"db.projects.find_by_user, {PROJECTS_PER_USER} rows, cached",
        lambda: db.projects.find_by_user(owner, order_by=order),
        number=number,
        baseline=base,
    )
    results = suite.run()
    if orm is not None:
        orm.session.rollback()
    return results


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _batches(
    make: Callable[[str, int], list[dict[str, Any]]], owner: str, count: int
) -> Iterator[list[dict[str, Any]]]:
    """Every batch of fresh rows the cases will write, made before timing."""
    return iter([make(owner, ROWS_PER_TRANSACTION) for _ in range(count)])


def _bench_create(
    config: Config, db: mangostore.Database, raw: Any, orm: _Orm | None, owner: str
) -> list[Measurement]:
    suite = Suite("orm create", config)
    number = 20
    total = config.total_calls(number)
    for table, columns, make, repo, model in (
        ("projects", PROJECT_COLUMNS, _projects, db.projects, orm and orm.Project),
        ("command_history", COMMAND_COLUMNS, _commands, db.command_history, orm and orm.Command),
    ):
        sql = _insert_sql(table, columns)
        raw_rows = _batches(make, owner, total)

        def raw_once(rows: Iterator[list[dict[str, Any]]] = raw_rows, sql: str = sql) -> None:
            raw.execute("BEGIN IMMEDIATE")
            for row in next(rows):
                raw.execute(sql, tuple(row.values()))
            raw.execute("COMMIT")

        base = f"{table}: sqlcipher3 INSERT each, one transaction"
        suite.add(base, raw_once, number=number)
        if orm is not None:
            orm_rows = _batches(make, owner, total)

            def orm_once(
                rows: Iterator[list[dict[str, Any]]] = orm_rows, model: Any = model
            ) -> None:
                session = orm.session
                for row in next(rows):
                    session.add(model(**row))
                session.commit()

            base = f"{table}: sqlalchemy add each, commit"
            suite.add(base, orm_once, number=number)
        repo_rows = _batches(make, owner, total)

        def repo_once(rows: Iterator[list[dict[str, Any]]] = repo_rows, repo: Any = repo) -> None:
            with db.transaction():
                for row in next(rows):
                    repo.create(**row)

        suite.add(
            f"{table}: db.{table}.create in db.transaction()",
            repo_once,
            number=number,
            baseline=base,
        )
    if orm is not None:
        orm.session.expunge_all()
    return _per_row(suite.run(), ROWS_PER_TRANSACTION)


def _bench_update(
    config: Config, db: mangostore.Database, raw: Any, orm: _Orm | None, ids: list[str]
) -> list[Measurement]:
    suite = Suite("orm update", config)
    number = 20
    sql = "UPDATE users SET preferences = ?, updated_at = ? WHERE id = ?"
    text = json.dumps(VALUE, separators=(",", ":"))
    chunks = itertools.cycle(
        [ids[i : i + ROWS_PER_TRANSACTION] for i in range(0, len(ids), ROWS_PER_TRANSACTION)]
    )

    def raw_once() -> None:
        raw.execute("BEGIN IMMEDIATE")
        now = _now_ms()
        for uid in next(chunks):
            raw.execute(sql, (text, now, uid))
        raw.execute("COMMIT")

    base = "sqlcipher3 UPDATE each, one transaction"
    suite.add(base, raw_once, number=number)
    if orm is not None:
        session, user = orm.session, orm.User

        def orm_once() -> None:
            now = _now_ms()
            for uid in next(chunks):
                found = session.get(user, uid)
                found.preferences = VALUE
                found.updated_at = now
            session.commit()
            session.expunge_all()

        base = "sqlalchemy get + set each, commit"
        suite.add(base, orm_once, number=number)

    def repo_once() -> None:
        with db.transaction():
            for uid in next(chunks):
                db.users.update(uid, preferences=VALUE)

    suite.add("db.users.update in db.transaction()", repo_once, number=number, baseline=base)
    return _per_row(suite.run(), ROWS_PER_TRANSACTION)


def _bench_create_many(
    config: Config, db: mangostore.Database, raw: Any, orm: _Orm | None, owner: str
) -> list[Measurement]:
    suite = Suite("orm create_many", config)
    total = config.total_calls(1)
    for table, columns, make, repo, model in (
        ("projects", PROJECT_COLUMNS, _projects, db.projects, orm and orm.Project),
        ("command_history", COMMAND_COLUMNS, _commands, db.command_history, orm and orm.Command),
    ):
        sql = _insert_sql(table, columns)
        raw_batches = iter(
            [[tuple(r.values()) for r in make(owner, config.rows)] for _ in range(total)]
        )

        def raw_once(
            batches: Iterator[list[tuple[Any, ...]]] = raw_batches, sql: str = sql
        ) -> None:
            raw.execute("BEGIN IMMEDIATE")
            raw.executemany(sql, next(batches))
            raw.execute("COMMIT")

        base = f"{table}: sqlcipher3 executemany, {config.rows:,} rows"
        suite.add(base, raw_once, number=1)
        if orm is not None:
            bulk_batches = iter([make(owner, config.rows) for _ in range(total)])
            add_batches = iter([make(owner, config.rows) for _ in range(total)])

            def bulk_once(
                batches: Iterator[list[dict[str, Any]]] = bulk_batches, model: Any = model
            ) -> None:
                orm.session.execute(sqlalchemy.insert(model), next(batches))
                orm.session.commit()

            def add_all_once(
                batches: Iterator[list[dict[str, Any]]] = add_batches, model: Any = model
            ) -> None:
                orm.session.add_all([model(**row) for row in next(batches)])
                orm.session.commit()
                orm.session.expunge_all()

            suite.add(f"{table}: sqlalchemy bulk insert()", bulk_once, number=1, baseline=base)
            suite.add(f"{table}: sqlalchemy add_all, commit", add_all_once, number=1, baseline=base)
        repo_batches = iter([make(owner, config.rows) for _ in range(total)])
        suite.add(
            f"{table}: db.{table}.create_many",
            lambda batches=repo_batches, repo=repo: repo.create_many(next(batches)),
            number=1,
            baseline=base,
        )
    return suite.run()


# -- the encrypted file: what field encryption costs ------------------------------------


def _encrypted_file(path: Path, config: Config) -> list[Measurement]:
    settings = Settings(kdf=FAST_KDF)
    with mangostore.create(path, passphrase=PASSPHRASE, settings=settings) as (db, _):
        ids = [u.id for u in db.users.create_many(_users(min(config.rows, 2_000)))]
        owner = ids[0]
        projects = [p.id for p in db.projects.create_many(_projects(owner, 2 * PROJECTS_PER_USER))]
        # Every user has a data key before timing (the first seal makes it), and no
        # encrypted value: a read-back then decrypts nothing, on either side.
        db.users.update_many([(uid, {"security_profile": VALUE}) for uid in ids])
        db.users.update_many([(uid, {"security_profile": None}) for uid in ids])
        half = len(ids) // 2
        results = _bench_field_updates(
            config,
            db,
            users=(ids[:half], ids[half:]),
            projects=(projects[:PROJECTS_PER_USER], projects[PROJECTS_PER_USER:]),
        )
        results += _bench_encrypt(config, db, ids)
    return results


def _bench_field_updates(
    config: Config,
    db: mangostore.Database,
    users: tuple[list[str], list[str]],
    projects: tuple[list[str], list[str]],
) -> list[Measurement]:
    """The same update of a plain and of an encrypted JSON column, per row, in
    transactions of ROWS_PER_TRANSACTION updates: of one user's row (``users``, where
    every row has its own key), and of one person's projects (one key, many rows). Each
    case updates rows of its own, so that no case reads back the other's values."""
    suite = Suite("field encryption", config)
    number = 20
    cases = (
        ("users", "preferences", "security_profile", users),
        ("projects", "metadata", "security_config", projects),
    )
    for table, plain, sealed, (plain_rows, sealed_rows) in cases:
        repo = getattr(db, table)
        base = f"db.{table}.update({plain}=...), plain JSON"
        for name, column, rows in (
            (base, plain, plain_rows),
            (f"db.{table}.update({sealed}=...), encrypted JSON", sealed, sealed_rows),
        ):
            ids = itertools.cycle(rows)

            def update_once(repo: Any = repo, column: str = column, ids: Any = ids) -> None:
                with db.transaction():
                    if repo is db.users:  # one user's row, again and again
                        uid = next(ids)
                        for _ in range(ROWS_PER_TRANSACTION):
                            repo.update(uid, **{column: VALUE})
                    else:  # one person's projects
                        for _ in range(ROWS_PER_TRANSACTION):
                            repo.update(next(ids), **{column: VALUE})

            suite.add(name, update_once, number=number, baseline=None if name == base else base)
    return _per_row(suite.run(), ROWS_PER_TRANSACTION)


def _bench_encrypt(config: Config, db: mangostore.Database, ids: list[str]) -> list[Measurement]:
    cipher = db.store.field_cipher
    assert cipher is not None
    plaintext = json.dumps(VALUE, separators=(",", ":")).encode()
    aead = AESGCM(secrets.token_bytes(32))
    users = itertools.cycle(ids[:ROWS_PER_TRANSACTION])
    suite = Suite("field encrypt", config)
    number = 5_000
    base = f"AESGCM encrypt, {len(plaintext)} B"
    suite.add(base, lambda: aead.encrypt(secrets.token_bytes(12), plaintext, None), number=number)
    with db.store.transaction() as conn:
        suite.add(
            "FieldCipher.encrypt, in a transaction",
            lambda: cipher.encrypt(
                conn, "users", "security_profile", (u := next(users)), u, plaintext
            ),
            number=number,
            baseline=base,
        )
        return suite.run()
