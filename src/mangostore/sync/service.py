"""``db.sync``: enabling sync, pushing and pulling batches, status, conflicts.

See docs/sync.md. Pushing reads the pending row states in one snapshot and seals
them in batches; each batch is marked pushed in one short transaction once the relay
has it. Pulling applies each batch, and moves the cursor past it, in one short
transaction with capture off; a batch applied twice changes nothing. The write lock
is never held for more than one batch, and never while waiting for the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mangostore.errors import (
    ConfigurationError,
    DatabaseError,
    SyncError,
    TamperedDataError,
    ValidationError,
)
from mangostore.sync.applying import Applier, read_device, record_error
from mangostore.sync.batches import chunk, encoded, seal_batch
from mangostore.sync.capture import backfill, current_digest, install
from mangostore.sync.changes import pending_states
from mangostore.sync.clock import unpack
from mangostore.sync.conflicts import Conflict, list_conflicts, resolve, set_strategy
from mangostore.sync.merge import MergeCounts
from mangostore.sync.scheduler import SyncScheduler
from mangostore.sync.transport import SyncTransport

if TYPE_CHECKING:
    from mangostore.clock import Clock
    from mangostore.settings import Settings
    from mangostore.sync.ports import SyncDatabase

__all__ = ["Conflict", "SyncReport", "SyncService", "SyncStatus"]

#: The seed's batch size, and a byte cap so one batch stays small on a slow link.
BATCH_CHANGES = 100
BATCH_BYTES = 512 * 1024
#: Pending rows read per snapshot when pushing.
_PUSH_READ = BATCH_CHANGES * 10
_PULL_PAGE = 50


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """What ``db.sync.status()`` says."""

    device_id: str
    vault_id: str | None
    enabled: bool
    #: The device's clock: the last timestamp issued or received, and its time in ms.
    clock: int
    clock_ms: int
    pending_changes: int
    last_push_at: int | None
    last_pull_at: int | None
    cursor: int
    conflicts_open: int
    #: Batches from devices on a newer schema, kept until this one is migrated.
    held_batches: int
    #: The most a received timestamp was ahead of this device's wall clock (ms); above
    #: a minute the local clock was not moved that far.
    clock_ahead_ms: int
    last_error: str | None
    scheduled: bool


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one :meth:`SyncService.sync` did."""

    pushed_batches: int
    pushed_changes: int
    pulled_batches: int
    applied: int
    ignored: int
    conflicts: int


class SyncService:
    """Multi-device sync of one database. Reached as ``db.sync``."""

    def __init__(self, db: SyncDatabase) -> None:
        self._db = db
        self._store = db.store
        self._transport: SyncTransport | None = None
        self._scheduler: SyncScheduler | None = None
        # The clock starts above everything it issued before: the persisted clock
        # (written at every push and pull) and the changes made since the last push.
        with self._store.reading() as conn:
            row = conn.execute(
                "SELECT max((SELECT clock FROM sync_device WHERE id = 1), "
                "coalesce((SELECT max(life) FROM sync_rows WHERE seq IS NOT NULL), 0), "
                "coalesce((SELECT max(c.hlc) FROM sync_rows AS r JOIN sync_cells AS c "
                "ON c.tbl = r.tbl AND c.pk = r.pk WHERE r.seq IS NOT NULL), 0))"
            ).fetchone()
        self._store.capture.clock.advance_to(int(row[0] or 0))

    def __repr__(self) -> str:
        return f"<mangostore SyncService device={self.device_id}>"

    # -- identity and set-up -------------------------------------------------------------

    @property
    def device_id(self) -> str:
        """This device's id, made when the database was created."""
        return str(self._device()["device_id"])

    @property
    def vault_id(self) -> str:
        """The vault id every device of this database shares.

        Raises:
            ConfigurationError: the database has no keyring (sync needs one).
        """
        keyring = self._store.keyring
        if keyring is None:
            raise ConfigurationError(
                "sync needs an encrypted database (a keyring): batches are sealed with "
                "the vault's sync key, so the relay cannot read them"
            )
        return keyring.vault_id

    @property
    def enabled(self) -> bool:
        """Whether changes are being captured for sync."""
        return self._device()["enabled_at"] is not None

    def _device(self) -> Any:
        return read_device(self._store)

    def enable(self, transport: SyncTransport | None = None) -> int:
        """Start capturing changes (once per database), and use ``transport``.

        The first call makes the capture triggers and marks every existing row as a
        pending change, so the first push sends the database as it is. Later calls
        (and other processes) only check the triggers still match the tables.
        Returns how many existing rows were marked.

        Raises:
            ConfigurationError: the database has no keyring.
        """
        _ = self.vault_id
        marked = 0
        with self._store.transaction() as conn:
            row = conn.execute(
                "SELECT enabled_at, triggers FROM sync_device WHERE id = 1"
            ).fetchone()
            if row[0] is None or row[1] != current_digest(conn):
                digest = install(conn)
                if row[0] is None:
                    marked = backfill(conn)
                conn.execute(
                    "UPDATE sync_device SET enabled_at = coalesce(enabled_at, ?), triggers = ? "
                    "WHERE id = 1",
                    (self._store.clock.now_ms(), digest),
                )
        if transport is not None:
            self.connect(transport)
        return marked

    def new_device(
        self,
        path: str | os.PathLike[str],
        passphrase: str,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
    ) -> tuple[Any, str | None]:
        """Make a new, empty database at ``path`` as another device of this vault.

        It shares this database's vault id and master key (so the batches and the
        encrypted fields of one open on the other) and has its own device id,
        passphrase and recovery key. Sync is enabled on it; connect it to the same
        relay and sync to fill it. For two databases on one machine (a second
        profile, a test); joining from another machine goes through the sync server.

        Returns:
            ``mangostore.Created``: the new database and its recovery key.

        Raises:
            ConfigurationError: this database has no keyring.
            DatabaseExistsError: ``path`` already holds a file.
        """
        _ = self.vault_id
        make = self._store.make_device
        if make is None:
            raise ConfigurationError("this database was not opened by mangostore.open")
        created: tuple[Any, str | None] = make(
            path,
            passphrase,
            settings=settings or self._store.settings,
            clock=clock,
            vault_of=self._store.keyring,
        )
        created[0].sync.enable()
        return created

    def refresh_capture(self) -> bool:
        """Make the capture triggers again if a migration changed a synced table's
        columns since they were made (opening does this); return whether it did."""
        if not self.enabled:
            return False
        with self._store.reading() as conn:  # most openings stop here, without the write lock
            if self._device()["triggers"] == current_digest(conn):
                return False
        with self._store.transaction() as conn:
            row = conn.execute("SELECT triggers FROM sync_device WHERE id = 1").fetchone()
            if row[0] == current_digest(conn):
                return False  # another process made them meanwhile
            conn.execute("UPDATE sync_device SET triggers = ?", (install(conn),))
        return True

    def connect(self, transport: SyncTransport) -> None:
        """Use ``transport`` to reach the relay (kept in this process only)."""
        if not isinstance(transport, SyncTransport):
            raise ValidationError("transport must have push() and pull() (SyncTransport)")
        self._transport = transport

    def _require(self) -> SyncTransport:
        if not self.enabled:
            raise SyncError("sync is not enabled on this database: call db.sync.enable(transport)")
        if self._transport is None:
            raise SyncError("no relay to sync with: call db.sync.connect(transport) first")
        return self._transport

    # -- pushing ----------------------------------------------------------------------------

    def push(self) -> tuple[int, int]:
        """Send every pending change; return (batches, changes) sent.

        Raises:
            SyncTransportError: the relay could not be reached (nothing is lost: the
                changes stay pending).
        """
        transport = self._require()
        key = self._sync_key()
        batches = changes = 0
        while True:
            self._note_erasures()
            with self._store.snapshot() as conn:
                pending = list(encoded(pending_states(conn, _PUSH_READ)))
                erasures = [
                    (str(u), int(t))
                    for u, t in conn.execute(
                        "SELECT user_id, erased_at FROM sync_erasures WHERE pushed = 0"
                    )
                ]
                device = conn.execute(
                    "SELECT batches_made, pulled_cursor, acked_cursor, content_cursor "
                    "FROM sync_device"
                ).fetchone()
            made, cursor, acked, content = (int(v) for v in device)
            # With nothing to send, a batch still goes when this device has applied
            # changes since it last said how far it got (or never said anything): the
            # acknowledgement lets the others compact (see compact()). Batches that
            # only acknowledge do not call for one, or two devices would answer each
            # other forever.
            if not pending and not erasures and made > 0 and content <= acked:
                return batches, changes
            groups = list(
                chunk(
                    ((raw, size) for raw, size, _, _ in pending),
                    max_changes=BATCH_CHANGES,
                    max_bytes=BATCH_BYTES,
                )
            ) or [[]]
            offset = 0
            for group in groups:
                part = pending[offset : offset + len(group)]
                offset += len(group)
                made = self._reserve_number()
                batch = seal_batch(
                    key,
                    vault_id=self.vault_id,
                    device_id=self.device_id,
                    number=made,
                    schema_version=self._db.schema_version,
                    states=[raw for raw, _, _, _ in part],
                    erasures=erasures,
                    keys=self._wrapped_keys([s for _, _, s, _ in part]),
                    ack=cursor,
                )
                position = transport.push(batch)
                self._pushed(cursor, position, [(s, seq) for _, _, s, seq in part], erasures)
                erasures = []
                batches += 1
                changes += len(part)
            if len(pending) < _PUSH_READ:
                return batches, changes

    def _reserve_number(self) -> int:
        """Take the device's next batch number before sealing: two processes of one
        device pushing at once must not both send batch N (the relay keeps the first
        and the other's rows would be marked pushed though never stored)."""
        with self._store.transaction() as conn:
            conn.execute("UPDATE sync_device SET batches_made = batches_made + 1")
            return int(conn.execute("SELECT batches_made FROM sync_device").fetchone()[0])

    def _pushed(
        self,
        ack: int,
        position: int,
        part: list[tuple[Any, int]],
        erasures: list[tuple[str, int]],
    ) -> None:
        """Record a batch the relay has: its rows are no longer pending (unless they
        changed again meanwhile) and their latest state is at ``position``."""
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE sync_device SET last_push_at = ?, "
                "acked_cursor = max(acked_cursor, ?), clock = max(clock, ?)",
                (self._store.clock.now_ms(), ack, self._store.capture.clock.reading().last),
            )
            conn.executemany(
                "UPDATE sync_rows SET seq = CASE WHEN seq = ? THEN NULL ELSE seq END, pos = ? "
                "WHERE tbl = ? AND pk = ?",
                [(seq, position, s.table, s.pk) for s, seq in part],
            )
            if erasures:
                conn.executemany(
                    "UPDATE sync_erasures SET pushed = 1 WHERE user_id = ?",
                    [(u,) for u, _ in erasures],
                )

    def _wrapped_keys(self, states: list[Any]) -> list[tuple[str, str, bytes]]:
        """The wrapped data keys of the ``field_keys`` rows among ``states``."""
        keyring = self._store.keyring
        out: list[tuple[str, str, bytes]] = []
        for state in states:
            if state.table == "field_keys" and not state.dead and keyring is not None:
                entry = keyring.get_data_key(state.pk)
                if entry is not None:
                    out.append((entry.key_id, entry.user_id, entry.wrapped))
        return out

    def _note_erasures(self) -> None:
        """Record users erased here (the keyring knows them) as erasures to send."""
        keyring = self._store.keyring
        if keyring is None:
            return
        erased = keyring.erased_users()
        if not erased:
            return
        with self._store.transaction() as conn:
            conn.executemany(
                "INSERT INTO sync_erasures (user_id, erased_at, pushed) VALUES (?, ?, 0) "
                "ON CONFLICT (user_id) DO NOTHING",
                [(u, self._store.clock.now_ms()) for u in erased],
            )

    def _sync_key(self) -> bytes:
        keyring = self._store.keyring
        assert keyring is not None  # vault_id refused databases without one
        return keyring.subkey("sync")

    def pull(self) -> tuple[int, MergeCounts]:
        """Fetch and apply every batch the relay has after this device's cursor.

        Returns (batches taken, what the merges did). Batches this device sent are
        skipped; batches from a newer schema are kept until this device is migrated.

        Raises:
            SyncTransportError: the relay could not be reached.
            TamperedDataError: a batch failed authentication (the cursor stays before
                it; status shows the error).
        """
        transport = self._require()
        return self._applier().pull(transport, self._sync_key())

    def apply_held(self) -> int:
        """Apply the batches kept for a newer schema that this device now has; return
        how many were applied."""
        return self._applier().apply_held(self._sync_key())

    def _applier(self) -> Applier:
        return Applier(self._db, self.device_id, self.vault_id)

    def _record_error(self, message: str) -> None:
        record_error(self._store, message)

    def sync(self) -> SyncReport:
        """Push pending changes, then pull and apply what other devices sent.

        Raises:
            SyncError: sync is not enabled or has no transport.
            SyncTransportError: the relay could not be reached.
            DatabaseError: called inside a transaction.
        """
        if self._store.in_transaction():
            raise DatabaseError("db.sync.sync() cannot run inside a transaction")
        try:
            pushed, changes = self.push()
            pulled, counts = self.pull()
        except (SyncError, TamperedDataError) as exc:
            self._record_error(str(exc))
            raise
        self.compact()
        return SyncReport(pushed, changes, pulled, counts.applied, counts.ignored, counts.conflicts)

    def compact(self) -> int:
        """Drop the bookkeeping every known device no longer needs; return rows dropped.

        A tombstone whose deletion went through the relay at a position every other
        known device has applied (each says so in every batch it sends) loses its
        bookkeeping row. Nothing is dropped before another device is known, rows with
        changes not yet pushed and anything at or after a batch held for a newer schema
        are kept, and cell timestamps are kept as long as their row lives (a device
        that only pulled may still send the older ones they beat). A device that never
        syncs again holds compaction back: :meth:`forget_device` stops waiting for it.
        """
        with self._store.transaction() as conn:
            horizon = _horizon(conn, self.device_id)
            if horizon <= 0:
                return 0
            rows = conn.execute(
                "DELETE FROM sync_rows WHERE dead = 1 AND seq IS NULL AND pos <= ?", (horizon,)
            ).rowcount
        return max(int(rows), 0)

    def forget_device(self, device_id: str) -> bool:
        """Stop waiting for ``device_id``'s acknowledgements (a device lost or retired).

        If it ever syncs again, it may bring back rows deleted while it was away.
        Returns whether the device was known.
        """
        with self._store.transaction() as conn:
            return bool(
                conn.execute("DELETE FROM sync_peers WHERE device_id = ?", (device_id,)).rowcount
            )

    # -- status and conflicts ------------------------------------------------------------

    def status(self) -> SyncStatus:
        """Describe this device's sync: clock, pending changes, cursors, conflicts."""
        device = self._device()
        with self._store.snapshot() as conn:
            pending = conn.execute(
                "SELECT count(*) FROM sync_rows WHERE seq IS NOT NULL"
            ).fetchone()[0]
            open_ = conn.execute(
                "SELECT count(*) FROM sync_conflicts WHERE resolved_at IS NULL"
            ).fetchone()[0]
            held = conn.execute("SELECT count(*) FROM sync_inbox").fetchone()[0]
        reading = self._store.capture.clock.reading()
        last = max(reading.last, int(device["clock"]))
        keyring = self._store.keyring
        return SyncStatus(
            device_id=str(device["device_id"]),
            vault_id=keyring.vault_id if keyring is not None else None,
            enabled=device["enabled_at"] is not None,
            clock=last,
            clock_ms=unpack(last)[0],
            pending_changes=int(pending),
            last_push_at=device["last_push_at"],
            last_pull_at=device["last_pull_at"],
            cursor=int(device["pulled_cursor"]),
            conflicts_open=int(open_),
            held_batches=int(held),
            clock_ahead_ms=reading.max_ahead_ms,
            last_error=device["last_error"],
            scheduled=self._scheduler is not None and self._scheduler.running,
        )

    def conflicts(self, *, include_resolved: bool = False) -> list[Conflict]:
        """The values that lost a merge and were kept, newest first."""
        return list_conflicts(self._store, include_resolved=include_resolved)

    def resolve(self, conflict_id: str, choose: Literal["kept", "lost"] = "kept") -> Conflict:
        """Settle a conflict: ``kept`` leaves the merged value, ``lost`` writes the value
        that lost back (as a new local change, which then syncs everywhere).

        Raises:
            NotFoundError: no open conflict has that id.
            ValidationError: ``choose`` is neither, or ``lost`` for a conflict that
                has no single column value to restore.
        """
        return resolve(self._store, conflict_id, choose)

    def set_strategy(self, table: str, column: str, strategy: Literal["lww", "manual"]) -> None:
        """Make ``table.column`` keep the values that lose (``manual``), or not (``lww``).

        Every device should be told the same: the merged value is the same either way
        (last writer wins), only the keeping of losers differs.

        Raises:
            ValidationError: an unknown table, column or strategy.
        """
        set_strategy(self._store, table, column, strategy)

    # -- scheduling -----------------------------------------------------------------------

    def start(self, *, interval_s: float = 300.0, after_write_s: float = 2.0) -> None:
        """Sync in a background thread: on start, every ``interval_s`` seconds, and
        ``after_write_s`` after local writes; failures back off (3 retries with
        jitter, then the next round). :meth:`stop` and ``db.close()`` end it."""
        self._require()
        if self._scheduler is not None and self._scheduler.running:
            return
        self._scheduler = SyncScheduler(
            self.sync,
            changed=self._store.commits.version,
            pending=self._has_pending,
            interval_s=interval_s,
            after_write_s=after_write_s,
        )
        self._scheduler.start()

    def _has_pending(self) -> bool:
        """Whether local changes wait to be pushed (one probe of the pending index)."""
        with self._store.reading() as conn:
            row = conn.execute("SELECT 1 FROM sync_rows WHERE seq IS NOT NULL LIMIT 1").fetchone()
        return row is not None

    def stop(self) -> None:
        """Stop the background thread, waiting for a sync in progress to finish."""
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None

    def close(self) -> None:
        """Stop the background thread (``db.close()`` calls this)."""
        self.stop()


def _horizon(conn: Any, own_device: str) -> int:
    """The relay position every device has applied, this one included."""
    own = int(conn.execute("SELECT pulled_cursor FROM sync_device").fetchone()[0])
    peers = conn.execute(
        "SELECT min(acked_cursor) FROM sync_peers WHERE device_id <> ?", (own_device,)
    ).fetchone()[0]
    held = conn.execute("SELECT min(cursor) FROM sync_inbox").fetchone()[0]
    if peers is None:
        return 0  # no other device known yet: one may have pulled and not said so
    bounds = [own, int(peers)]
    bounds += [int(held) - 1] if held is not None else []
    return min(bounds)
