"""``db.sync``: enabling sync, pushing and pulling batches, status, conflicts.

See docs/sync.md. Pushing reads the pending row states in one snapshot and seals
them in batches; each batch is marked pushed in one short transaction once the relay
has it. Pulling applies each batch, and moves the cursor past it, in one short
transaction with capture off; a batch applied twice changes nothing. The write lock
is never held for more than one batch, and never while waiting for the network.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mangostore.errors import (
    ConfigurationError,
    DatabaseError,
    SyncCompactedError,
    SyncError,
    TamperedDataError,
    UnsettledSnapshotError,
    ValidationError,
)
from mangostore.filestore.remote import BlobRelay
from mangostore.progress import Progress
from mangostore.sync.applying import Applier, read_device, record_error
from mangostore.sync.capture import backfill, current_digest, install
from mangostore.sync.changes import has_unpushed
from mangostore.sync.clock import unpack
from mangostore.sync.compaction import drop_acknowledged
from mangostore.sync.conflicts import Conflict, list_conflicts, resolve, set_strategy
from mangostore.sync.http import HttpTransport
from mangostore.sync.identity import VaultSigner
from mangostore.sync.merge import MergeCounts
from mangostore.sync.pushing import Pusher
from mangostore.sync.scheduler import SyncScheduler
from mangostore.sync.snapshots import Snapshot, SnapshotTransport, read_settled
from mangostore.sync.transport import SyncTransport

if TYPE_CHECKING:
    from mangostore.clock import Clock
    from mangostore.settings import Settings
    from mangostore.sync.ports import SyncDatabase

__all__ = ["SNAPSHOT_EVERY", "Conflict", "SyncReport", "SyncService", "SyncStatus"]

#: A device uploads a snapshot when the vault is this many batches past the latest.
SNAPSHOT_EVERY = 500


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
            # A table that syncs since this release (stored files): its rows are sent
            # like those of a database that just enabled sync; rows already known keep
            # their bookkeeping.
            backfill(conn)
        return True

    def connect(self, transport: SyncTransport) -> None:
        """Use ``transport`` to reach the relay (kept in this process only). The
        database owns it from now on: a transport with a ``close()`` method (the sync
        server's) is closed when another replaces it and when the database closes."""
        if not isinstance(transport, SyncTransport):
            raise ValidationError("transport must have push() and pull() (SyncTransport)")
        previous, self._transport = self._transport, transport
        if previous is not None and previous is not transport:
            _close(previous)
        # Stored files' chunks travel through relays that carry them (docs/files.md).
        self._db.files.use_relay(transport if isinstance(transport, BlobRelay) else None)

    def _require(self) -> SyncTransport:
        if not self.enabled:
            raise SyncError("sync is not enabled on this database: call db.sync.enable(transport)")
        if self._transport is None:
            raise SyncError("no relay to sync with: call db.sync.connect(transport) first")
        return self._transport

    # -- pushing ----------------------------------------------------------------------------

    def push(self, *, progress: Progress | None = None) -> tuple[int, int]:
        """Send every pending change; return (batches, changes) sent. ``progress``
        hears stage ``pushing``, counted in changes.

        Raises:
            SyncTransportError: the relay could not be reached (nothing is lost: the
                changes stay pending).
        """
        transport = self._require()
        if isinstance(transport, BlobRelay):
            # Chunks first, so a file's row reaches other devices after its bytes (two
            # indexed reads when there is nothing to send).
            self._db.files.send_chunks(progress=progress)
        pusher = Pusher(self._db, self.device_id, self.vault_id)
        return pusher.push(transport, self._sync_key(), progress)

    def _sync_key(self) -> bytes:
        keyring = self._store.keyring
        assert keyring is not None  # vault_id refused databases without one
        return keyring.subkey("sync")

    def pull(self, *, progress: Progress | None = None) -> tuple[int, MergeCounts]:
        """Fetch and apply every batch the relay has after this device's cursor;
        ``progress`` hears stage ``pulling``, counted in batches. A new device, and
        one the relay compacted past, starts from the relay's latest snapshot.

        Returns (batches taken, what the merges did). Batches this device sent are
        skipped; batches from a newer schema are kept until this device is migrated.

        Raises:
            SyncTransportError: the relay could not be reached.
            TamperedDataError: a batch failed authentication (the cursor stays before
                it; status shows the error).
        """
        transport = self._require()
        if int(self._device()["pulled_cursor"]) == 0:
            self.bootstrap()
        try:
            taken, counts = self._applier().pull(transport, self._sync_key(), progress)
        except SyncCompactedError:
            # The relay dropped batches this device never saw: every other device has
            # them and a snapshot covers them, so start from the snapshot.
            if not self.bootstrap():
                raise
            taken, counts = self._applier().pull(transport, self._sync_key(), progress)
        return taken, counts

    # -- snapshots and the sync server ----------------------------------------------------

    def bootstrap(self) -> int:
        """Apply the relay's latest snapshot, if it keeps one this device is not past;
        return how many parts were applied (0: none to apply).

        Raises:
            TamperedDataError: a part failed authentication (nothing was applied).
            SyncError: the snapshot was made by a newer schema: migrate first.
        """
        transport = self._require()
        if not isinstance(transport, SnapshotTransport):
            return 0
        info = transport.latest_snapshot()
        if info is None or int(info["cursor"]) <= int(self._device()["pulled_cursor"]):
            return 0
        if int(info["schema_version"]) > self._db.schema_version:
            raise SyncError(
                "the relay's snapshot was made by a newer mangostore (schema "
                f"{info['schema_version']}); upgrade mangostore on this device"
            )
        snapshot = Snapshot(
            self.vault_id,
            str(info["snapshot_id"]),
            int(info["cursor"]),
            int(info["schema_version"]),
        )
        parts = [
            transport.snapshot_part(snapshot.snapshot_id, i) for i in range(int(info["parts"]))
        ]
        self._applier().apply_snapshot(self._sync_key(), snapshot, parts, str(info["device_id"]))
        self._note_snapshot(snapshot.cursor)
        return len(parts)

    def upload_snapshot(self) -> int | None:
        """Seal this device's whole synced state and upload it to the relay; return
        its cursor (``None``: the relay keeps no snapshots).

        New devices start from the latest snapshot, and the relay drops the batches
        it covers once every device is past them. :meth:`sync` calls this when the
        vault has moved :data:`SNAPSHOT_EVERY` batches past the latest one. It pushes
        what is pending and pulls first, until nothing is left to push, so the
        snapshot covers everything the relay holds (a device that has only pushed would
        otherwise snapshot at a cursor new devices skip) and holds nothing the relay
        lacks (a device starting from it would send children of rows the others do not
        have).

        Raises:
            UnsettledSnapshotError: changes kept being made faster than pushed.
        """
        return self._upload_snapshot(pulled=False)

    def _upload_snapshot(self, *, pulled: bool) -> int | None:
        """What :meth:`upload_snapshot` does; ``pulled``: the device has just pushed
        and pulled, so it pulls again only after pushing something (read_settled)."""
        transport = self._require()
        if not isinstance(transport, SnapshotTransport):
            return None
        version = self._db.schema_version
        snapshot, docs = read_settled(
            self._store, self.vault_id, version, self.push, self.pull, pulled=pulled
        )
        sealed = snapshot.seal_parts(self._sync_key(), docs)
        for i, body in enumerate(sealed):
            transport.put_snapshot_part(
                snapshot.snapshot_id,
                i,
                cursor=snapshot.cursor,
                schema_version=snapshot.schema_version,
                last=i == len(sealed) - 1,
                body=body,
            )
        self._note_snapshot(snapshot.cursor)
        return snapshot.cursor

    def _snapshot_if_due(self) -> None:
        """Upload a snapshot when one is due (:meth:`sync`, after its push and pull)."""
        transport = self._transport
        if not isinstance(transport, SnapshotTransport):
            return
        device = self._device()
        cursor, known = int(device["pulled_cursor"]), int(device["snapshot_cursor"])
        if cursor - known < SNAPSHOT_EVERY:
            return
        latest = transport.latest_snapshot()  # another device may have made one
        if latest is not None and cursor - int(latest["cursor"]) < SNAPSHOT_EVERY:
            self._note_snapshot(int(latest["cursor"]))
            return
        with contextlib.suppress(UnsettledSnapshotError):  # the next sync tries again
            self._upload_snapshot(pulled=True)

    def _note_snapshot(self, cursor: int) -> None:
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE sync_device SET snapshot_cursor = max(snapshot_cursor, ?)", (cursor,)
            )

    @property
    def relay(self) -> str | None:
        """The relay saved for this database (a sync server URL or a relay folder)."""
        value = self._device()["relay"]
        return None if value is None else str(value)

    def save_relay(self, relay: str | None) -> None:
        """Save the relay later commands sync with (``None`` forgets it)."""
        with self._store.transaction() as conn:
            conn.execute("UPDATE sync_device SET relay = ?", (relay,))

    def server(self, url: str, **options: Any) -> HttpTransport:
        """A transport to the sync server at ``url`` for this device (not yet used:
        pass it to :meth:`connect`, or use :meth:`attach`). ``options`` go to
        :class:`~mangostore.sync.http.HttpTransport` (timeout, retries, verify)."""
        keyring = self._store.keyring
        _ = self.vault_id  # refuses a database without a keyring
        assert keyring is not None
        return HttpTransport(
            url,
            signer=VaultSigner(keyring),
            vault_id=self.vault_id,
            device_id=self.device_id,
            **options,
        )

    def attach(self, url: str, **options: Any) -> str:
        """Sync this database through the sync server at ``url``: enable sync, attach
        the vault there (the first device of a vault does; later ones prove they
        belong to it), leave the escrow copy of the vault's key for joining devices,
        connect, and save the URL. Returns the URL other devices join with.

        Raises:
            SyncAuthError: the server keeps this vault id under another key.
            SyncTransportError: the server cannot be reached.
        """
        self.enable()
        transport = self.server(url, **options)
        transport.authenticate(attach=True)
        keyring = self._store.keyring
        assert keyring is not None
        transport.put_escrow(keyring.escrow())
        self.connect(transport)
        self.save_relay(transport.url)
        return transport.join_url

    def apply_held(self) -> int:
        """Apply the batches kept for a newer schema that this device now has; return
        how many were applied."""
        return self._applier().apply_held(self._sync_key())

    def _applier(self) -> Applier:
        return Applier(self._db, self.device_id, self.vault_id)

    def _record_error(self, message: str) -> None:
        record_error(self._store, message)

    def sync(self, *, progress: Progress | None = None) -> SyncReport:
        """Push pending changes, pull and apply what other devices sent, and upload a
        snapshot when one is due (``progress`` hears stages ``pushing`` and ``pulling``).

        Raises:
            SyncError: sync is not enabled or has no transport.
            SyncTransportError: the relay could not be reached (status keeps the error,
                as it keeps every sync error, a failed snapshot upload's included).
            DatabaseError: called inside a transaction.
        """
        if self._store.in_transaction():
            raise DatabaseError("db.sync.sync() cannot run inside a transaction")
        try:
            pushed, changes = self.push(progress=progress)
            pulled, counts = self.pull(progress=progress)
            self.compact()
            # Inside the try: a snapshot upload that fails is this sync's error too.
            self._snapshot_if_due()
        except (SyncError, TamperedDataError) as exc:
            self._record_error(str(exc))
            raise
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
        return drop_acknowledged(self._store, self.device_id)

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
        """Whether local changes wait to be pushed: rows, erasures, users the keyring
        holds as erased that no push has noted yet (the probe snapshots use too)."""
        keyring = self._store.keyring
        erased = keyring.erased_users() if keyring is not None else []
        with self._store.reading() as conn:
            return has_unpushed(conn, erased)

    def stop(self) -> None:
        """Stop the background thread, waiting for a sync in progress to finish."""
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None

    def close(self) -> None:
        """Stop the background thread and close the transport (``db.close()`` calls this)."""
        self.stop()
        if self._transport is not None:
            _close(self._transport)
            self._transport = None


def _close(transport: SyncTransport) -> None:
    """Close a transport that holds connections (the sync server's)."""
    close = getattr(transport, "close", None)
    if callable(close):
        close()
