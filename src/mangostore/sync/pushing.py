"""Pushing: the pending row states read in one snapshot, sealed in batches, each
marked pushed in one short transaction once the relay has it.

Used by ``db.sync`` (:mod:`mangostore.sync.service`); see docs/sync.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mangostore.progress import Progress, Reporter
from mangostore.sync.batches import chunk, encoded, seal_texts
from mangostore.sync.changes import pending_states
from mangostore.sync.transport import SyncTransport

if TYPE_CHECKING:
    from mangostore.sync.ports import SyncDatabase

__all__ = ["BATCH_BYTES", "BATCH_CHANGES", "Pusher"]

#: The seed's batch size, and a byte cap so one batch stays small on a slow link.
BATCH_CHANGES = 100
BATCH_BYTES = 512 * 1024
#: Pending rows read per snapshot when pushing.
_PUSH_READ = BATCH_CHANGES * 10


class Pusher:
    """Pushes the pending changes of one device."""

    def __init__(self, db: SyncDatabase, device_id: str, vault_id: str) -> None:
        self._db = db
        self._store = db.store
        self.device_id = device_id
        self.vault_id = vault_id

    def push(
        self, transport: SyncTransport, key: bytes, progress: Progress | None = None
    ) -> tuple[int, int]:
        """What :meth:`mangostore.sync.SyncService.push` does, through ``transport``
        with the vault's sync ``key``; reports stage ``pushing`` in changes."""
        reporter = Reporter(progress)
        if reporter.wanted:
            with self._store.reading() as conn:
                row = conn.execute("SELECT count(*) FROM sync_rows WHERE seq IS NOT NULL")
                reporter.begin("pushing", int(row.fetchone()[0]))
        batches, changes = self._push(transport, key, reporter)
        reporter.end()
        return batches, changes

    def _push(self, transport: SyncTransport, key: bytes, reporter: Reporter) -> tuple[int, int]:
        batches = changes = 0
        while True:
            self.note_erasures()
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
                    ((text, size) for text, size, _, _ in pending),
                    max_changes=BATCH_CHANGES,
                    max_bytes=BATCH_BYTES,
                )
            ) or [[]]
            offset = 0
            made = self._reserve_number()
            for i, group in enumerate(groups):
                part = pending[offset : offset + len(group)]
                offset += len(group)
                batch = seal_texts(
                    key,
                    vault_id=self.vault_id,
                    device_id=self.device_id,
                    number=made,
                    schema_version=self._db.schema_version,
                    texts=[text for text, _, _, _ in part],
                    erasures=erasures,
                    keys=self.wrapped_keys([s for _, _, s, _ in part]),
                    ack=cursor,
                )
                position = transport.push(batch)
                # The next batch's number is taken in the same transaction that records
                # this one: a commit a batch fewer.
                made = self._pushed(
                    cursor,
                    position,
                    [(s, seq) for _, _, s, seq in part],
                    erasures,
                    reserve=i + 1 < len(groups),
                )
                erasures = []
                batches += 1
                changes += len(part)
                reporter.advance(len(part))
            if len(pending) < _PUSH_READ:
                return batches, changes

    def _reserve_number(self) -> int:
        """Take the device's next batch number before sealing: two processes of one
        device pushing at once must not both send batch N (the relay keeps the first
        and the other's rows would be marked pushed though never stored)."""
        with self._store.transaction() as conn:
            return _take_number(conn)

    def _pushed(
        self,
        ack: int,
        position: int,
        part: list[tuple[Any, int]],
        erasures: list[tuple[str, int]],
        *,
        reserve: bool,
    ) -> int:
        """Record a batch the relay has: its rows are no longer pending (unless they
        changed again meanwhile) and their latest state is at ``position``. With
        ``reserve``, also take the next batch number (see :meth:`_reserve_number`)
        and return it; otherwise return 0."""
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
            return _take_number(conn) if reserve else 0

    def wrapped_keys(self, states: list[Any]) -> list[tuple[str, str, bytes]]:
        """The wrapped data keys of the ``field_keys`` rows among ``states``."""
        keyring = self._store.keyring
        out: list[tuple[str, str, bytes]] = []
        for state in states:
            if state.table == "field_keys" and not state.dead and keyring is not None:
                entry = keyring.get_data_key(state.pk)
                if entry is not None:
                    out.append((entry.key_id, entry.user_id, entry.wrapped))
        return out

    def note_erasures(self) -> None:
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


def _take_number(conn: Any) -> int:
    """Take the device's next batch number, inside the caller's transaction."""
    conn.execute("UPDATE sync_device SET batches_made = batches_made + 1")
    return int(conn.execute("SELECT batches_made FROM sync_device").fetchone()[0])
