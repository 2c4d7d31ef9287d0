"""Applying what other devices sent: pulling batches in relay order, merging each in
one short transaction that also moves the cursor, erasures, held batches.

Used by ``db.sync`` (:mod:`mangostore.sync.service`); see docs/sync.md.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mangostore.errors import SyncError, TamperedDataError
from mangostore.keys.keyring import DataKeyEntry
from mangostore.progress import Progress, Reporter
from mangostore.sync.batches import Batch, BatchBody, open_batch
from mangostore.sync.graph import fold_duplicate_entities
from mangostore.sync.merge import MergeCounts, Merger
from mangostore.sync.settle import fix_references
from mangostore.sync.snapshots import Snapshot, merge_redirects
from mangostore.sync.tables import SYNCED_BY_NAME
from mangostore.sync.transport import SyncTransport
from mangostore.sync.writes import SchemaCache

if TYPE_CHECKING:
    from mangostore.engine.store import Store
    from mangostore.sync.ports import SyncDatabase

__all__ = ["Applier", "read_device", "record_error"]

_PULL_PAGE = 50


class Applier:
    """Pulls and applies batches for one device."""

    def __init__(self, db: SyncDatabase, device_id: str, vault_id: str) -> None:
        self._db = db
        self._store = db.store
        self.device_id = device_id
        self.vault_id = vault_id
        # Read once for every merge of this applier: the schema does not change
        # while it pulls.
        self._schema = SchemaCache()

    def _device(self) -> Any:
        return read_device(self._store)

    def pull(
        self, transport: SyncTransport, key: bytes, progress: Progress | None = None
    ) -> tuple[int, MergeCounts]:
        """What :meth:`mangostore.sync.SyncService.pull` does, through ``transport``
        with the vault's sync ``key``; reports stage ``pulling`` in batches."""
        total = MergeCounts()
        taken = 0
        reporter = Reporter(progress)
        reporter.begin("pulling")
        self.apply_held(key)
        while True:
            cursor = int(self._device()["pulled_cursor"])
            page = transport.pull(self.vault_id, cursor, _PULL_PAGE)
            if not page:
                reporter.end()
                return taken, total
            ready: list[tuple[int, Batch]] = []
            for pulled in sorted(page, key=lambda p: p.cursor):
                if pulled.cursor <= cursor:
                    continue  # a repeat of what was applied
                if pulled.cursor != cursor + 1:
                    break  # a gap: pull again from the cursor
                ready.append((pulled.cursor, pulled.batch))
                cursor = pulled.cursor
            taken += self._take_all(key, ready, total, reporter)

    def _take_all(
        self, key: bytes, ready: list[tuple[int, Batch]], total: MergeCounts, reporter: Reporter
    ) -> int:
        """Apply consecutive batches in order; return how many were applied.

        Each batch is merged on its own (its own merge, references settled, cursor
        moved) as it always is, but batches that only merge rows share one
        transaction, each in a savepoint of it: a commit a batch would cost more than
        merging its rows. A batch that erases users or carries data keys changes the
        keyring beside the file, and one that brings knowledge-graph entities folds
        twins through the graph's service: each is applied alone, after the
        batches before it are committed. A batch that fails leaves those before it
        applied, as if each had its own transaction.
        """
        bodies: dict[int, BatchBody | None] = {}

        def body_of(at: int) -> BatchBody | None:
            if at not in bodies:
                try:
                    bodies[at] = self._open(key, ready[at][1])
                except (SyncError, TamperedDataError) as exc:
                    record_error(self._store, str(exc))
                    raise
            return bodies[at]

        at = 0
        while at < len(ready):
            body = body_of(at)
            if body is not None and _alone(body):
                self._take(*ready[at], body, total)
                bodies.pop(at)  # only the body checked ahead stays in memory
                reporter.advance()
                at += 1
                continue
            failure: Exception | None = None
            with self._store.transaction():
                while at < len(ready):
                    try:
                        body = body_of(at)
                        if body is not None and _alone(body):
                            break
                        self._take(*ready[at], body, total)
                        bodies.pop(at)
                    except Exception as exc:
                        failure = exc  # the batches before it are committed first
                        break
                    reporter.advance()
                    at += 1
            if failure is not None:
                raise failure
        return len(ready)

    def _open(self, key: bytes, batch: Batch) -> BatchBody | None:
        """The body of a batch to merge; ``None`` for one that is only recorded (this
        device's own, another vault's, a newer schema's)."""
        if batch.device_id == self.device_id or batch.vault_id != self.vault_id:
            return None
        if batch.schema_version > self._db.schema_version:
            return None
        return open_batch(key, batch)

    def _take(self, cursor: int, batch: Batch, body: BatchBody | None, total: MergeCounts) -> None:
        """Apply one pulled batch (opened: ``body``) and move the cursor past it."""
        if batch.device_id == self.device_id or batch.vault_id != self.vault_id:
            # This device's own batch counts as applied content: its next push says
            # so, which is how the others learn that it has passed this position.
            self._advance(cursor, content=batch.device_id == self.device_id)
            return
        if body is None:  # from a newer schema: kept until this device has it
            with self._store.transaction() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO sync_inbox (cursor, device_id, schema_version, payload) "
                    "VALUES (?, ?, ?, ?)",
                    (cursor, batch.device_id, batch.schema_version, _pack(batch)),
                )
                self._move_cursor(conn, cursor)
            return
        for user_id, _when in body.erasures:
            self._erase(user_id)
        self._keep_keys(body.keys)
        counts = self._merge(
            body.states,
            cursor,
            batch.device_id,
            body.ack,
            content=bool(body.states or body.erasures),
        )
        self._fold_entities(body.states)
        total.add(counts)

    def _merge(
        self,
        states: list[Any],
        cursor: int | None,
        device: str,
        ack: int,
        *,
        content: bool,
    ) -> MergeCounts:
        store = self._store
        erased = set(store.keyring.erased_users()) if store.keyring is not None else set()
        with store.transaction() as conn:
            erased |= {str(u) for (u,) in conn.execute("SELECT user_id FROM sync_erasures")}
            manual = {
                (str(t), str(c)) for t, c in conn.execute("SELECT tbl, col FROM sync_strategies")
            }
            # Setting a flag pragma expires every prepared statement of the connection
            # (SQLite recompiles each, triggers and all): set it once a transaction
            # (COMMIT and ROLLBACK switch it off), not once a batch of a shared one.
            if not conn.execute("PRAGMA defer_foreign_keys").fetchone()[0]:
                conn.execute("PRAGMA defer_foreign_keys = ON")
            merger = Merger(
                conn,
                store.capture.clock,
                store.clock.now_ms(),
                erased,
                manual,
                schema=self._schema,
                savepoint=store.transaction,
                position=cursor,
            )
            store.capture.set_applying(True)
            try:
                merged = [s for s in states if s.table in SYNCED_BY_NAME]
                merger.merge_all(merged)
                fix_references(merger, merged)
            finally:
                store.capture.set_applying(False)
            if cursor is not None:
                self._move_cursor(conn, cursor)
                if content:
                    conn.execute(
                        "UPDATE sync_device SET content_cursor = max(content_cursor, ?)",
                        (cursor,),
                    )
                conn.executemany(
                    "UPDATE sync_rows SET pos = max(coalesce(pos, 0), ?) WHERE tbl = ? AND pk = ?",
                    [
                        (cursor, s.table, s.pk)
                        for s in states
                        if (s.table, s.pk) not in merger.positioned
                    ],
                )
            conn.execute(
                "INSERT INTO sync_peers (device_id, acked_cursor, seen_at) VALUES (?, ?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET "
                "acked_cursor = max(acked_cursor, excluded.acked_cursor), "
                "seen_at = excluded.seen_at",
                (device, ack, store.clock.now_ms()),
            )
        return merger.counts

    def _fold_entities(self, states: list[Any]) -> None:
        """Fold knowledge-graph entities two devices made for one name (sync.graph)."""
        arrived = [s.pk for s in states if s.table == "kg_entities" and not s.dead]
        if arrived:
            fold_duplicate_entities(self._db, arrived)

    def _keep_keys(self, keys: list[tuple[str, str, bytes]]) -> None:
        """Store a batch's wrapped data keys, but never one of a user erased here: a
        device that had not heard of the erasure may have made it, and kept, it would
        open again what it sealed."""
        keyring = self._store.keyring
        if not keys or keyring is None:
            return
        with self._store.reading() as conn:
            erased = {str(u) for (u,) in conn.execute("SELECT user_id FROM sync_erasures")}
        erased |= set(keyring.erased_users())
        kept = [DataKeyEntry(k, u, w) for k, u, w in keys if u not in erased]
        if kept:
            keyring.put_data_keys(kept)

    def _erase(self, user_id: str) -> None:
        """Erase a user another device erased (once)."""
        keyring = self._store.keyring
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT INTO sync_erasures (user_id, erased_at, pushed) VALUES (?, ?, 1) "
                "ON CONFLICT (user_id) DO NOTHING",
                (user_id, self._store.clock.now_ms()),
            )
        if keyring is not None and user_id in keyring.erased_users():
            return
        exists = self._db.query("SELECT 1 FROM users WHERE id = ?", (user_id,), use_cache=False)
        if exists or keyring is not None:
            self._db.privacy.erase_user(user_id)

    def _advance(self, cursor: int, *, content: bool = False) -> None:
        with self._store.transaction() as conn:
            self._move_cursor(conn, cursor)
            if content:
                conn.execute(
                    "UPDATE sync_device SET content_cursor = max(content_cursor, ?)", (cursor,)
                )

    def _move_cursor(self, conn: Any, cursor: int) -> None:
        conn.execute(
            "UPDATE sync_device SET pulled_cursor = max(pulled_cursor, ?), last_pull_at = ?, "
            "clock = max(clock, ?), last_error = NULL",
            (cursor, self._store.clock.now_ms(), self._store.capture.clock.reading().last),
        )

    def apply_snapshot(
        self, key: bytes, snapshot: Snapshot, parts: list[bytes], device_id: str
    ) -> MergeCounts:
        """Merge a snapshot's parts (all authenticated before any is applied), then
        move the cursor to the snapshot's. A part's redirects of folded rows are merged
        in the transaction of its states, before them.

        Raises:
            TamperedDataError: a part was changed, moved, or is missing at the end.
            SyncError: a part authenticates but cannot be read (a newer format).
        """
        last = len(parts) - 1
        for i, sealed in enumerate(parts):
            snapshot.open_part(key, i, i == last, sealed)
        total = MergeCounts()
        for i, sealed in enumerate(parts):
            opened = snapshot.open_part(key, i, i == last, sealed)
            body = opened.body
            for user_id, _when in body.erasures:
                self._erase(user_id)
            self._keep_keys(body.keys)
            # The redirects go in first, in a transaction the merge of the states is
            # a savepoint of: a state that deletes a folded row then finds its survivor.
            with self._store.transaction() as conn:
                merge_redirects(conn, opened.redirects)
                counts = self._merge(body.states, None, device_id, body.ack, content=False)
            self._fold_entities(body.states)
            total.add(counts)
        self._advance(snapshot.cursor)
        return total

    def apply_held(self, key: bytes) -> int:
        """Apply the batches kept for a newer schema that this device now has; return
        how many were applied."""
        with self._store.reading() as conn:
            held = conn.execute(
                "SELECT cursor, device_id, schema_version, payload FROM sync_inbox "
                "WHERE schema_version <= ? ORDER BY cursor",
                (self._db.schema_version,),
            ).fetchall()
        for cursor, _device, _version, payload in held:
            batch = _unpack(bytes(payload))
            body = open_batch(key, batch)
            for user_id, _when in body.erasures:
                self._erase(user_id)
            self._keep_keys(body.keys)
            self._merge(body.states, None, batch.device_id, body.ack, content=True)
            self._fold_entities(body.states)
            with self._store.transaction() as conn:
                conn.execute("DELETE FROM sync_inbox WHERE cursor = ?", (cursor,))
        return len(held)


def _alone(body: BatchBody) -> bool:
    """Whether a batch must be applied in its own transactions (see ``_take_all``)."""
    return bool(body.erasures or body.keys) or any(
        s.table == "kg_entities" and not s.dead for s in body.states
    )


def read_device(store: Store) -> Any:
    """This device's row of ``sync_device``: id, clock, cursors, last error."""
    with store.reading() as conn:
        return conn.execute("SELECT * FROM sync_device WHERE id = 1").fetchone()


def record_error(store: Store, message: str) -> None:
    """Keep the last sync error for status."""
    with store.transaction() as conn:
        conn.execute("UPDATE sync_device SET last_error = ?", (message[:500],))


def _pack(batch: Batch) -> bytes:
    head = json.dumps(
        [batch.vault_id, batch.device_id, batch.number, batch.schema_version]
    ).encode()
    return len(head).to_bytes(4, "big") + head + batch.body


def _unpack(payload: bytes) -> Batch:
    size = int.from_bytes(payload[:4], "big")
    vault, device, number, version = json.loads(payload[4 : 4 + size])
    return Batch(str(vault), str(device), int(number), int(version), payload[4 + size :])
