"""Snapshots: the whole synced state of a device, sealed in parts, so that a new
device starts from it and pulls only the batches after it.

A snapshot is what one device knows at a relay cursor: the state of every synced row
(tombstones included, so that an old edit arriving later cannot bring a deleted row
back), the redirects of rows folded into another on a unique-key clash (so that a
child of a folded row that arrives later follows it to its survivor, as on the devices
that folded it), the erased users and the wrapped data keys of the living ones; it is
read in one read transaction, and only when the device has no change the relay lacks
(it pushes and pulls first, see :func:`read_settled`). A row the snapshot held before
the relay did would reach a device that starts from it ahead of every other device: what that
device then made under it (a memory of a user) would reach the others before its
parent, and be taken for the child of a row deleted elsewhere.

It travels as parts of :data:`PART_STATES` row states, each sealed like a batch body
(zstd, then AES-GCM under the vault's sync key) with the snapshot's id, cursor, schema
version, part number and a last-part flag as associated data: a part cannot be moved
to another snapshot or place, and a snapshot cut short is detected. A part's document
is a batch body's (``s`` states, ``e`` erasures, ``k`` wrapped keys, ``a`` cursor) and
the first part's also holds ``r``, the redirects as ``[table, from pk, to pk]``; a part
without ``r`` carries none (a device that ignores it reads the rest as before).

Applying one is merging its states (the same merge as batches, so applying it to a
device that already has data is also right), then moving the cursor to it. The
redirects are merged in the first part's transaction, before its states
(:func:`merge_redirects`): a device that still has a row the snapshot holds as folded
then moves that row's children to the survivor when the row's deletion is merged,
instead of dropping them as orphans.

Parts are held in memory while uploading and downloading: about 150 bytes a row once
compressed (15 MB for 100,000 rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mangostore.engine.pragmas import Connection
from mangostore.errors import UnsettledSnapshotError
from mangostore.ids import new_id
from mangostore.sync.batches import (
    BatchBody,
    body_of,
    open_doc,
    pack_body,
    seal_doc,
    unreadable,
)
from mangostore.sync.capture import synced_columns
from mangostore.sync.changes import encode_state, has_unpushed, read_sites, read_states
from mangostore.sync.settle import record_redirect
from mangostore.sync.tables import SYNCED_BY_NAME

if TYPE_CHECKING:
    from mangostore.engine.store import Store

__all__ = [
    "PART_STATES",
    "SETTLE_ROUNDS",
    "SNAPSHOT_FORMAT",
    "Redirect",
    "Snapshot",
    "SnapshotPart",
    "SnapshotTransport",
    "WrappedKeys",
    "merge_redirects",
    "read_settled",
    "read_snapshot",
]

SNAPSHOT_FORMAT = "mangostore-snapshot/1"
#: Row states in one part.
PART_STATES = 2000
#: Pushes and pulls before a snapshot is given up: a pull may settle a clash (a change
#: of this device's, to push in turn), and a write may come between.
SETTLE_ROUNDS = 3

WrappedKeys = list[tuple[str, str, bytes]]
#: A row folded into another on a unique-key clash: (table, its key, its survivor's key).
Redirect = tuple[str, str, str]


@runtime_checkable
class SnapshotTransport(Protocol):
    """What a relay that keeps snapshots offers (the sync server does)."""

    def latest_snapshot(self) -> dict[str, Any] | None:
        """The latest complete snapshot's description (id, cursor, parts...)."""
        ...

    def snapshot_part(self, snapshot_id: str, part: int) -> bytes:
        """One sealed part."""
        ...

    def put_snapshot_part(
        self,
        snapshot_id: str,
        part: int,
        *,
        cursor: int,
        schema_version: int,
        last: bool,
        body: bytes,
    ) -> bool:
        """Upload one sealed part, in order; return whether it completed the snapshot."""
        ...


@dataclass(frozen=True, slots=True)
class SnapshotPart:
    """One opened part: what a batch body carries, and the redirects."""

    body: BatchBody
    redirects: list[Redirect]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot's identity: what its parts are sealed to."""

    vault_id: str
    snapshot_id: str
    cursor: int
    schema_version: int

    def aad(self, part: int, last: bool) -> bytes:
        """The associated data of part ``part``."""
        fields = (SNAPSHOT_FORMAT, self.vault_id, self.snapshot_id, self.cursor)
        return "/".join(str(f) for f in (*fields, self.schema_version, part, int(last))).encode()

    def seal_parts(self, key: bytes, bodies: list[dict[str, Any]]) -> list[bytes]:
        """Seal each part's document."""
        last = len(bodies) - 1
        return [seal_doc(key, self.aad(i, i == last), doc) for i, doc in enumerate(bodies)]

    def open_part(self, key: bytes, part: int, last: bool, sealed: bytes) -> SnapshotPart:
        """Authenticate and decode one part (its redirects: none when it has no ``r``).

        Raises:
            TamperedDataError: the part was changed, moved, or belongs elsewhere.
            SyncError: the part authenticates but cannot be read (a newer format).
        """
        what = f"part {part} of snapshot {self.snapshot_id}"
        doc = open_doc(key, self.aad(part, last), sealed, what)
        body = body_of(doc, what)
        try:
            redirects = [(str(t), str(f), str(to)) for t, f, to in doc.get("r", [])]
        except (ValueError, TypeError, AttributeError) as exc:
            raise unreadable(what, exc) from None
        return SnapshotPart(body, redirects)


def merge_redirects(conn: Connection, redirects: Sequence[Redirect]) -> None:
    """Add a snapshot's redirects to this device's own, in the caller's transaction
    (before the snapshot's states are merged in it, so that the merge follows them).

    A redirect this device already holds for the same row is kept. Both come from the
    same rule applied to the same rows, so they are the same redirect, unless the two
    devices had each seen a different earlier row with that unique key: those rows then
    meet in the merge of the snapshot's states, and the fold there leads every redirect
    to the later one on to the earliest. Each redirect is recorded as a fold made here
    records its own (:func:`~mangostore.sync.settle.record_redirect`), so every chain of
    them leads to the last survivor.
    """
    for table, from_pk, to_pk in redirects:
        if from_pk != to_pk:
            record_redirect(conn, table, from_pk, to_pk, keep=True)


def read_settled(
    store: Store,
    vault_id: str,
    schema_version: int,
    push: Callable[[], object],
    pull: Callable[[], object],
    *,
    pulled: bool = False,
) -> tuple[Snapshot, list[dict[str, Any]]]:
    """Push what the device has not sent (when it has something), pull, and read its
    snapshot (:func:`read_snapshot`, with the wrapped data keys of the users not
    erased, as the keyring has them once the pull is done); again while the device
    has changes the relay lacks (a clash the pull settled, a write meanwhile).

    ``pulled`` says the device has just pushed and pulled (``db.sync.sync()`` before a
    snapshot it finds due): with nothing to push, the first round then reads at once,
    as another pull would only bring what arrived since.

    Raises:
        UnsettledSnapshotError: changes were still waiting after :data:`SETTLE_ROUNDS`.
    """
    for round_ in range(SETTLE_ROUNDS):
        with store.reading() as conn:
            unpushed = has_unpushed(conn, _erased(store))
        if unpushed:
            push()
        if unpushed or not (pulled and round_ == 0):
            pull()
        made = read_snapshot(store, vault_id, schema_version, _live_keys(store))
        if made is not None:
            return made
    raise UnsettledSnapshotError(
        "this device kept having changes not yet sent; no snapshot was uploaded (try again)"
    )


def _erased(store: Store) -> list[str]:
    """The users the keyring holds as erased."""
    keyring = store.keyring
    return [] if keyring is None else keyring.erased_users()


def _live_keys(store: Store) -> WrappedKeys:
    """The wrapped data keys of the users not erased."""
    keyring = store.keyring
    assert keyring is not None
    erased = set(keyring.erased_users())
    return [
        (e.key_id, e.user_id, e.wrapped) for e in keyring.data_keys() if e.user_id not in erased
    ]


def read_snapshot(
    store: Store, vault_id: str, schema_version: int, keys: WrappedKeys
) -> tuple[Snapshot, list[dict[str, Any]]] | None:
    """Read the device's whole synced state in one read transaction; return the
    snapshot's identity and its parts' documents (not yet sealed), or ``None`` when
    the device has changes it has not pushed (:func:`~mangostore.sync.changes.has_unpushed`:
    rows, erasures, users the keyring holds as erased that no push has noted yet).

    ``keys`` are the wrapped data keys to carry (the living users'). The cursor is the
    device's, or just before the first batch it holds for a newer schema.
    """
    with store.snapshot() as conn:
        if has_unpushed(conn, _erased(store)):
            return None
        cursor = int(conn.execute("SELECT pulled_cursor FROM sync_device").fetchone()[0])
        held = conn.execute("SELECT min(cursor) FROM sync_inbox").fetchone()[0]
        if held is not None:
            cursor = min(cursor, int(held) - 1)
        erasures = [
            (str(u), int(t))
            for u, t in conn.execute("SELECT user_id, erased_at FROM sync_erasures")
        ]
        redirects = [
            [str(t), str(f), str(to)]
            for t, f, to in conn.execute(
                "SELECT tbl, from_pk, to_pk FROM sync_redirects ORDER BY tbl, from_pk"
            )
        ]
        states = list(_all_states(conn))
    groups = [states[i : i + PART_STATES] for i in range(0, len(states), PART_STATES)] or [[]]
    docs = [
        pack_body(group, erasures if i == 0 else [], keys if i == 0 else [], cursor)
        for i, group in enumerate(groups)
    ]
    # In the first part, which is applied first: the redirects must be there before
    # any state is merged (see merge_redirects).
    docs[0]["r"] = redirects
    return Snapshot(vault_id, new_id(), cursor, schema_version), docs


#: Rows whose states are read together (a few statements for each such group).
_READ_AT_ONCE = 2000


def _all_states(conn: Connection) -> Iterator[list[Any]]:
    """Every synced row's encoded state, table by table."""
    sites = read_sites(conn)
    for name, spec in SYNCED_BY_NAME.items():
        columns = synced_columns(conn, spec)
        pks = [
            str(pk)
            for (pk,) in conn.execute("SELECT pk FROM sync_rows WHERE tbl = ? ORDER BY pk", (name,))
        ]
        for start in range(0, len(pks), _READ_AT_ONCE):  # memory stays bounded
            part = pks[start : start + _READ_AT_ONCE]
            states = read_states(conn, name, part, sites, columns)
            for pk in part:
                state = states.get(pk)
                if state is not None:
                    yield encode_state(state)
