"""Opening a database: :func:`open_database` (``mangostore.open``) and its checks.

Opening refuses what is not a usable mangostore database before anything is written:
an interrupted copy, an unencrypted file opened with a passphrase, an encrypted one
opened without, a foreign SQLite file, a schema newer than the code. A database that
fails to come into being leaves no file behind.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

from mangostore.clock import Clock, SystemClock
from mangostore.db import MEMORY, Database, page_key_of, pre_migration_backup
from mangostore.engine.commits import ChangesWatch, CommitWatch, DataVersionWatch
from mangostore.engine.connection import connect, driver_errors, is_plain_sqlite
from mangostore.engine.pool import ReaderPool
from mangostore.engine.pragmas import Connection, reader_setup, writer_setup
from mangostore.engine.store import Store
from mangostore.engine.turnstile import Turnstile, turnstile_path
from mangostore.engine.writer import Writer
from mangostore.errors import ConfigurationError, NotADatabaseError
from mangostore.keys.keyring import Keyring, keyring_path, lock_path
from mangostore.monitor.instruments import Instruments
from mangostore.schema.copies import PARTIAL
from mangostore.schema.runner import MigrationRunner, load_migrations
from mangostore.settings import Settings

__all__ = ["open_database"]


def open_database(
    path: str | os.PathLike[str],
    passphrase: str | None = None,
    *,
    encrypted: bool = True,
    create: bool = True,
    recovery_key: str | None = None,
    settings: Settings | None = None,
    migrate: bool = True,
    clock: Clock | None = None,
) -> Database:
    """Open (or create) a mangostore database and bring its schema up to date.

    Args:
        path: the database file, or ``":memory:"``.
        passphrase: unlocks the keyring; required unless ``encrypted=False``.
        encrypted: ``False`` asks for plain pages. With a passphrase, sensitive fields
            are still encrypted; without one, nothing is.
        create: make the database (and its keyring) when the file does not exist.
        recovery_key: unlock with the recovery key instead of the passphrase.
        settings: tunables; see :class:`mangostore.Settings`.
        migrate: apply pending migrations (a backup copy is made first).
        clock: where timestamps come from (default: the system clock); tests pass a
            :class:`mangostore.clock.ManualClock`.

    Raises:
        ConfigurationError: no passphrase for an encrypted database, or bad settings.
        WrongPassphraseError, KeyringMissingError, KeyringCorruptError: key problems.
        NotADatabaseError: the file is not a mangostore database.
        SchemaTooNewError, MigrationChecksumError, MigrationError: schema problems.
    """
    settings = settings or Settings()
    path_str = os.fspath(path)
    memory = path_str == MEMORY
    unlocking = passphrase is not None or recovery_key is not None
    if encrypted and not unlocking:
        raise ConfigurationError(
            "a passphrase is needed to open an encrypted database; pass passphrase=..., "
            "or encrypted=False to ask for an unencrypted one"
        )
    if not memory:
        _refuse_interrupted_copy(path_str)
    exists = not memory and os.path.exists(path_str) and os.path.getsize(path_str) > 0
    if not memory and not exists and not create:
        what = "is empty (0 bytes)" if os.path.exists(path_str) else "does not exist"
        raise NotADatabaseError(
            f"{path_str} {what}: there is no database to open; pass create=True to make one"
        )
    created_files: list[Path] = []
    keyring: Keyring | None = None
    recovery_text: str | None = None
    if unlocking:
        ring_path = None if memory else keyring_path(path_str)
        if ring_path is not None and exists:
            if not ring_path.exists() and is_plain_sqlite(path_str):
                raise NotADatabaseError(
                    f"{path_str} is an unencrypted SQLite database (it has no keyring): open "
                    "it with encrypted=False and no passphrase"
                )
            keyring = Keyring.unlock(ring_path, passphrase=passphrase, recovery_key=recovery_key)
        elif passphrase is None:
            raise ConfigurationError("a recovery key can only unlock an existing database")
        else:
            keyring, recovery_text = _create_keyring(ring_path, passphrase, settings, encrypted)
            if ring_path is not None:
                created_files += [ring_path, lock_path(ring_path)]
    elif exists and keyring_path(path_str).exists():
        raise NotADatabaseError(
            f"{path_str} has a keyring beside it, so it is encrypted: open it with its passphrase"
        )
    if not memory and not exists:
        created_files += [Path(path_str + suffix) for suffix in ("", "-wal", "-shm")]
        created_files.append(Path(turnstile_path(path_str)))
    page_key = page_key_of(keyring)
    writer_conn: Connection | None = None
    commits: CommitWatch | None = None
    writer: Writer | None = None
    pool: ReaderPool | None = None
    clock = clock or SystemClock()
    instruments = Instruments(path_str, settings, clock, keyring)
    try:
        # A foreign file is refused before the setup switches it to WAL.
        writer_conn = connect(
            path_str,
            page_key,
            writer_setup(settings.busy_timeout_ms),
            check=functools.partial(_check_is_mangostore, path=path_str) if exists else None,
            factory=instruments.factory,
        )
        writer = Writer(
            writer_conn,
            busy_timeout_ms=settings.busy_timeout_ms,
            turnstile=None if memory else _turnstile(path_str),
        )
        commits = _commit_watch(path_str, page_key, settings, writer)
        instruments.attach_writer(writer, commits)
        if not memory:
            pool = ReaderPool(
                lambda: instruments.reader(
                    connect(
                        path_str,
                        page_key,
                        reader_setup(settings.busy_timeout_ms),
                        factory=instruments.factory,
                    )
                ),
                max_size=settings.pool_max_readers,
                acquire_timeout_s=settings.pool_acquire_timeout_ms / 1000,
                idle_timeout_s=settings.pool_idle_timeout_ms / 1000,
            )
        runner = MigrationRunner(writer, load_migrations(), clock)
        if migrate:
            runner.migrate(before=pre_migration_backup(writer, path_str, page_key, settings))
        else:
            runner.verify()
        store = Store(
            path_str,
            writer=writer,
            pool=pool,
            commits=commits,
            instruments=instruments,
            settings=settings,
            clock=clock,
            keyring=keyring,
        )
        database = Database(store, runner=runner, recovery_key=recovery_text)
        if keyring is not None and keyring.erased_users():
            # An older copy (or restored backup) may still hold erased users' rows.
            database.privacy.reapply_erasures()
        return database
    except BaseException:
        instruments.close()
        if pool is not None:
            pool.close()
        if commits is not None:
            commits.close()
        if writer is not None:
            writer.close()  # its connection and its turnstile
        elif writer_conn is not None:
            writer_conn.close()
        # A database that failed to come into being leaves nothing behind, least of
        # all a keyring that would block the next attempt.
        for leftover in created_files:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        raise


def _turnstile(path: str) -> Turnstile | None:
    """The writers' turnstile beside the database, or ``None`` where it cannot be made
    (a read-only folder): writers then still exclude each other, only less fairly."""
    try:
        return Turnstile(turnstile_path(path))
    except OSError:
        return None


def _create_keyring(
    path: Path | None, passphrase: str, settings: Settings, encrypted: bool
) -> tuple[Keyring, str]:
    """Create the keyring of a new database; a failure leaves no lock file behind."""
    lock = lock_path(path) if path is not None else None
    lock_existed = lock is not None and lock.exists()
    try:
        return Keyring.create(path, passphrase, settings.kdf, page_encryption=encrypted)
    except BaseException:
        if lock is not None and not lock_existed:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
        raise


def _refuse_interrupted_copy(path: str) -> None:
    """Refuse a file that a copy was still being written to.

    mangostore databases are always in WAL mode, so a rollback journal beside one means
    its last writer was cut short in the middle of a copy (the backup API writes the
    copy in rollback-journal mode); SQLite would roll it back to an empty file, which
    would then be made into a new, empty database.

    Raises:
        NotADatabaseError: the file is an interrupted copy.
    """
    journal = path + "-journal"
    if path.endswith(PARTIAL) or os.path.exists(journal):
        raise NotADatabaseError(
            f"{path} is an interrupted copy (a copy cut short leaves a rollback journal "
            f"beside it or a name ending in {PARTIAL!r}), not a usable database; open the "
            "database it was copied from, or a finished copy"
        )


def _commit_watch(
    path: str, page_key: bytes | None, settings: Settings, writer: Writer
) -> CommitWatch:
    """The database's commit watch: ``data_version`` of a connection of its own for a
    file, the writer's change count for an in-memory database (nothing else can write)."""
    if path == MEMORY:
        connection = writer.connection
        return ChangesWatch(lambda: int(connection.total_changes))
    return DataVersionWatch(lambda: connect(path, page_key, reader_setup(settings.busy_timeout_ms)))


def _check_is_mangostore(conn: Connection, path: str) -> None:
    """Refuse an SQLite file that has tables but no ``schema_migrations``: not ours."""
    with driver_errors(path):
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables and "schema_migrations" not in tables:
        raise NotADatabaseError(
            f"{path} is an SQLite database but not a mangostore one (it has no "
            "schema_migrations table); refusing to add tables to it"
        )
