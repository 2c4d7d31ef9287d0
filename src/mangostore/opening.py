"""Creating and opening a database: :func:`create_database` (``mangostore.create``),
:func:`open_database` (``mangostore.open``) and their checks.

Making a database is asked for by name: ``create`` refuses a path that already holds
one and hands back the recovery key, and ``open`` refuses a missing path unless
``create=True`` is given, so a mistyped path is an error rather than a new, empty
database whose recovery key nobody saw.

Opening refuses what is not a usable mangostore database before anything is written:
an interrupted copy, an unencrypted file opened with a passphrase, an encrypted one
opened without, a foreign SQLite file, a schema newer than the code. A database that
fails to come into being leaves no file behind.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from mangostore.clock import Clock, SystemClock
from mangostore.db import MEMORY, Database, page_key_of, pre_migration_backup
from mangostore.engine.commits import ChangesWatch, CommitWatch, DataVersionWatch
from mangostore.engine.connection import (
    STATEMENT_CACHE_SIZE,
    connect,
    driver_errors,
    is_plain_sqlite,
)
from mangostore.engine.pool import ReaderPool
from mangostore.engine.pragmas import Connection, reader_setup, writer_setup
from mangostore.engine.store import Store
from mangostore.engine.turnstile import Turnstile, turnstile_path
from mangostore.engine.writer import Writer
from mangostore.errors import ConfigurationError, DatabaseExistsError, NotADatabaseError
from mangostore.keys.keyring import Keyring, keyring_path, lock_path
from mangostore.monitor.instruments import Instruments
from mangostore.schema import introspect
from mangostore.schema.copies import PARTIAL
from mangostore.schema.runner import MigrationRunner, load_migrations
from mangostore.settings import Settings
from mangostore.sync.clock import CaptureState

__all__ = ["Created", "create_database", "open_database"]


class Created(NamedTuple):
    """A database :func:`create_database` has just made, and its recovery key.

    Unpack it, or use it as a context manager that closes the database::

        db, recovery_key = mangostore.create("mango.db", passphrase="...")
        with mangostore.create("mango.db", passphrase="...") as (db, recovery_key):
            ...

    Its ``repr`` never shows the key.
    """

    #: The new database, open and migrated.
    db: Database
    #: The recovery key, to be stored apart from the passphrase: mangostore keeps no
    #: copy of it. ``None`` for a database without a keyring (``encrypted=False`` and
    #: no passphrase).
    recovery_key: str | None

    def __repr__(self) -> str:
        key = None if self.recovery_key is None else "<hidden>"
        return f"Created(db={self.db!r}, recovery_key={key})"

    def __enter__(self) -> Created:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.db.close()


def create_database(
    path: str | os.PathLike[str],
    passphrase: str | None = None,
    *,
    encrypted: bool = True,
    settings: Settings | None = None,
    migrate: bool = True,
    clock: Clock | None = None,
    vault_of: Keyring | None = None,
) -> Created:
    """Create a new mangostore database and return it with its recovery key.

    The recovery key unlocks the database when the passphrase is lost; it exists only
    in what this returns, so store it somewhere safe, apart from the passphrase. A file
    of 0 bytes (what ``touch`` or a temporary-file call leaves) counts as no database.
    ``":memory:"`` is always new.

    Args:
        path: the new database file, or ``":memory:"``.
        passphrase: protects the new keyring; required unless ``encrypted=False``.
        encrypted: ``False`` asks for plain pages. With a passphrase, sensitive fields
            are still encrypted (and there is a recovery key); without one, nothing is.
        settings: tunables; see :class:`mangostore.Settings` (``kdf`` sets the cost of
            the passphrase's key derivation).
        migrate: bring the schema to the latest version (``False`` leaves it empty).
        clock: where timestamps come from (default: the system clock).
        vault_of: the unlocked keyring of a database whose vault the new one joins
            as another device (``db.sync.new_device`` passes it).

    Returns:
        :class:`Created`: the open database and its recovery key (``None`` without a
        keyring). The key counts as taken: closing the database does not warn.

    Raises:
        DatabaseExistsError: ``path`` already holds a database (or another file);
            open it with :func:`open_database`, or choose another path.
        ConfigurationError: no passphrase for an encrypted database, or bad settings.
        KeyringError: a keyring is left beside the missing database file.
    """
    db = _open(
        path,
        passphrase,
        encrypted=encrypted,
        create=True,
        new_only=True,
        recovery_key=None,
        settings=settings,
        migrate=migrate,
        clock=clock,
        vault_of=vault_of,
    )
    return Created(db, db.take_recovery_key())


def open_database(
    path: str | os.PathLike[str],
    passphrase: str | None = None,
    *,
    encrypted: bool = True,
    create: bool = False,
    recovery_key: str | None = None,
    settings: Settings | None = None,
    migrate: bool = True,
    clock: Clock | None = None,
) -> Database:
    """Open a mangostore database and bring its schema up to date.

    A missing file is an error unless ``create=True`` asks for one to be made (an
    in-memory database is always new). A new database is better made with
    :func:`create_database`, which returns its recovery key; one made here keeps the
    key for :meth:`Database.take_recovery_key`, and closing it without the key taken
    (or discarded with :meth:`Database.discard_recovery_key`) warns with
    :class:`~mangostore.errors.RecoveryKeyWarning`.

    Args:
        path: the database file, or ``":memory:"``.
        passphrase: unlocks the keyring; required unless ``encrypted=False``.
        encrypted: ``False`` asks for plain pages. With a passphrase, sensitive fields
            are still encrypted; without one, nothing is.
        create: make the database (and its keyring) when the file does not exist
            (open-or-create).
        recovery_key: unlock with the recovery key instead of the passphrase.
        settings: tunables; see :class:`mangostore.Settings`.
        migrate: apply pending migrations (a backup copy is made first).
        clock: where timestamps come from (default: the system clock); tests pass a
            :class:`mangostore.clock.ManualClock`.

    Raises:
        ConfigurationError: no passphrase for an encrypted database, or bad settings.
        WrongPassphraseError, KeyringMissingError, KeyringCorruptError: key problems.
        NotADatabaseError: the file does not exist (and ``create`` is false), is empty,
            or is not a mangostore database.
        SchemaTooNewError, MigrationChecksumError, MigrationError: schema problems.
    """
    return _open(
        path,
        passphrase,
        encrypted=encrypted,
        create=create,
        new_only=False,
        recovery_key=recovery_key,
        settings=settings,
        migrate=migrate,
        clock=clock,
    )


def _open(
    path: str | os.PathLike[str],
    passphrase: str | None,
    *,
    encrypted: bool,
    create: bool,
    new_only: bool,
    recovery_key: str | None,
    settings: Settings | None,
    migrate: bool,
    clock: Clock | None,
    vault_of: Keyring | None = None,
) -> Database:
    """Open or make the database as :func:`open_database` and :func:`create_database` ask."""
    settings = settings or Settings()
    path_str = os.fspath(path)
    exists = _check_request(
        path_str,
        encrypted=encrypted,
        unlocking=passphrase is not None or recovery_key is not None,
        create=create,
        new_only=new_only,
    )
    keys = _keys_for(
        path_str, exists, passphrase, recovery_key, settings, encrypted=encrypted, vault_of=vault_of
    )
    created_files = keys.created_files
    if path_str != MEMORY and not exists:
        created_files += _new_database_files(path_str)
    clock = clock or SystemClock()
    engine = _Engine(
        path_str,
        page_key_of(keys.keyring),
        settings,
        Instruments(path_str, settings, clock, keys.keyring),
    )
    try:
        writer = engine.start(existing=exists)
        capture = CaptureState(clock)
        # Before any write: once sync is enabled, the capture triggers call these.
        capture.register(writer.connection)
        runner = MigrationRunner(writer, load_migrations(), clock)
        if migrate:
            runner.migrate(before=pre_migration_backup(writer, path_str, engine.page_key, settings))
        else:
            runner.verify()
        store = engine.store(clock, keys.keyring, capture)
        store.make_device = create_database
        database = Database(store, runner=runner, recovery_key=keys.recovery_text)
        if migrate and keys.keyring is not None:
            # A migration may have changed a synced table: capture must follow it.
            database.sync.refresh_capture()
        if keys.keyring is not None and keys.keyring.erased_users():
            # An older copy (or restored backup) may still hold erased users' rows.
            database.privacy.reapply_erasures()
        return database
    except BaseException:
        engine.close()
        # A database that failed to come into being leaves nothing behind, least of
        # all a keyring that would block the next attempt.
        for leftover in created_files:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        raise


def _check_request(
    path: str, *, encrypted: bool, unlocking: bool, create: bool, new_only: bool
) -> bool:
    """Refuse what cannot be opened as asked; return whether the database file exists
    (and is not empty).

    Raises:
        ConfigurationError: an encrypted database asked for without a passphrase.
        DatabaseExistsError: ``new_only`` and the file exists.
        NotADatabaseError: an interrupted copy, or no file while ``create`` is false.
    """
    memory = path == MEMORY
    if encrypted and not unlocking:
        raise ConfigurationError(
            "a passphrase is needed to open an encrypted database; pass passphrase=..., "
            "or encrypted=False to ask for an unencrypted one"
        )
    if not memory:
        _refuse_interrupted_copy(path)
    exists = not memory and os.path.exists(path) and os.path.getsize(path) > 0
    if exists and new_only:
        raise DatabaseExistsError(
            f"{path} already exists, so no new database was made there: open it with "
            f"mangostore.open({path!r}, passphrase=...), or choose another path"
        )
    if not memory and not exists and not create:
        what = "is empty (0 bytes)" if os.path.exists(path) else "does not exist"
        raise NotADatabaseError(
            f"{path} {what}: there is no database to open (check the path). To make a "
            f"new one, use mangostore.create({path!r}, passphrase=...), which also "
            "returns its recovery key, or mangostore.open(..., create=True)"
        )
    return exists


@dataclass
class _Keys:
    """The keyring an opening unlocked or made, and the files it made."""

    keyring: Keyring | None = None
    #: The recovery key of a keyring made just now, shown once.
    recovery_text: str | None = None
    created_files: list[Path] = field(default_factory=list)


def _keys_for(
    path: str,
    exists: bool,
    passphrase: str | None,
    recovery_key: str | None,
    settings: Settings,
    *,
    encrypted: bool,
    vault_of: Keyring | None = None,
) -> _Keys:
    """Unlock the keyring of an existing database, or make the keyring of a new one.

    Raises:
        NotADatabaseError: a passphrase for an unencrypted file, or none for a file
            with a keyring beside it.
        ConfigurationError: a recovery key for a database that does not exist yet.
        WrongPassphraseError, KeyringMissingError, KeyringCorruptError: key problems.
    """
    if passphrase is None and recovery_key is None:
        if exists and keyring_path(path).exists():
            raise NotADatabaseError(
                f"{path} has a keyring beside it, so it is encrypted: open it with its passphrase"
            )
        return _Keys()
    ring_path = None if path == MEMORY else keyring_path(path)
    if ring_path is not None and exists:
        if not ring_path.exists() and is_plain_sqlite(path):
            raise NotADatabaseError(
                f"{path} is an unencrypted SQLite database (it has no keyring): open "
                "it with encrypted=False and no passphrase"
            )
        return _Keys(Keyring.unlock(ring_path, passphrase=passphrase, recovery_key=recovery_key))
    if passphrase is None:
        raise ConfigurationError("a recovery key can only unlock an existing database")
    keyring, recovery_text = _create_keyring(ring_path, passphrase, settings, encrypted, vault_of)
    created = [] if ring_path is None else [ring_path, lock_path(ring_path)]
    return _Keys(keyring, recovery_text, created)


def _new_database_files(path: str) -> list[Path]:
    """The files opening a new database makes beside the keyring: removed on failure."""
    return [Path(path + suffix) for suffix in ("", "-wal", "-shm")] + [Path(turnstile_path(path))]


@dataclass
class _Engine:
    """The connections an opening makes, kept so that a failure closes exactly those."""

    path: str
    page_key: bytes | None
    settings: Settings
    instruments: Instruments
    writer_conn: Connection | None = None
    writer: Writer | None = None
    commits: CommitWatch | None = None
    pool: ReaderPool | None = None

    def start(self, *, existing: bool) -> Writer:
        """Open the writer, the commit watch and (for a file) the reader pool.

        An ``existing`` file that is SQLite but not mangostore is refused before the
        writer's setup switches it to WAL.
        """
        path, settings = self.path, self.settings
        self.writer_conn = connect(
            path,
            self.page_key,
            writer_setup(settings.busy_timeout_ms),
            check=functools.partial(_check_is_mangostore, path=path) if existing else None,
            factory=self.instruments.factory,
        )
        self.writer = writer = Writer(
            self.writer_conn,
            busy_timeout_ms=settings.busy_timeout_ms,
            turnstile=None if path == MEMORY else _turnstile(path),
        )
        self.commits = _commit_watch(path, self.page_key, settings, writer)
        self.instruments.attach_writer(writer, self.commits)
        if path != MEMORY:
            self.pool = ReaderPool(
                self._new_reader,
                max_size=settings.pool_max_readers,
                acquire_timeout_s=settings.pool_acquire_timeout_ms / 1000,
                idle_timeout_s=settings.pool_idle_timeout_ms / 1000,
            )
        return writer

    def _new_reader(self, cached_statements: int = STATEMENT_CACHE_SIZE) -> Connection:
        return self.instruments.reader(
            connect(
                self.path,
                self.page_key,
                reader_setup(self.settings.busy_timeout_ms),
                factory=self.instruments.factory,
                cached_statements=cached_statements,
            )
        )

    def _long_reader(self) -> Connection:
        """A reader that keeps no prepared statement (see Store.snapshot_after)."""
        return self._new_reader(cached_statements=0)

    def store(self, clock: Clock, keyring: Keyring | None, capture: CaptureState) -> Store:
        """Hand the started engine over to a :class:`Store`."""
        assert self.writer is not None, "start() first"
        assert self.commits is not None, "start() first"
        return Store(
            self.path,
            writer=self.writer,
            pool=self.pool,
            long_reader=self._long_reader if self.pool is not None else None,
            commits=self.commits,
            instruments=self.instruments,
            settings=self.settings,
            clock=clock,
            keyring=keyring,
            capture=capture,
        )

    def close(self) -> None:
        """Close whatever was opened, newest first."""
        self.instruments.close()
        if self.pool is not None:
            self.pool.close()
        if self.commits is not None:
            self.commits.close()
        if self.writer is not None:
            self.writer.close()  # its connection and its turnstile
        elif self.writer_conn is not None:
            self.writer_conn.close()


def _turnstile(path: str) -> Turnstile | None:
    """The writers' turnstile beside the database, or ``None`` where it cannot be made
    (a read-only folder): writers then still exclude each other, only less fairly."""
    try:
        return Turnstile(turnstile_path(path))
    except OSError:
        return None


def _create_keyring(
    path: Path | None,
    passphrase: str,
    settings: Settings,
    encrypted: bool,
    vault_of: Keyring | None = None,
) -> tuple[Keyring, str]:
    """Create the keyring of a new database; a failure leaves no lock file behind."""
    lock = lock_path(path) if path is not None else None
    lock_existed = lock is not None and lock.exists()
    try:
        if vault_of is not None:
            return vault_of.new_device(path, passphrase, settings.kdf)
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
        tables = {table.name for table in introspect.schema_objects(conn, "table")}
    if tables and "schema_migrations" not in tables:
        raise NotADatabaseError(
            f"{path} is an SQLite database but not a mangostore one (it has no "
            "schema_migrations table); refusing to add tables to it"
        )
