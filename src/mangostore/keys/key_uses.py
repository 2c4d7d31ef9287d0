"""The data keys the cipher seals with, and the key uses not yet recorded.

Sealing a value needs the owner's primary data key and must count one use of it
against :data:`~mangostore.keys.field_cipher.MAX_ENCRYPTIONS_PER_KEY`. Done with
statements, that is a ``SELECT`` and an ``UPDATE`` of ``field_keys`` per value. Only
the cipher writes ``field_keys``, always inside the writer's transaction, so
:class:`KeyUses` keeps both in memory instead:

- **Primary keys.** Each user's primary key, as read (or made) at their first seal, is
  kept with ``field_keys.encryption_count`` as it stands. While the transaction runs it
  cannot change behind the cipher's back (the transaction holds SQLite's write lock). It
  is kept after a commit too, with the count the commit wrote, until another
  connection commits or the schema changes: the first seal of every transaction reads
  the writer connection's ``data_version`` (which moves only when another connection,
  another process or another open of the same file, has committed) and
  ``schema_version`` (a migration may have rebuilt ``field_keys``), and when either
  moved every kept key is read again, since that change may have rotated, retired or
  destroyed it.
  A rollback, of the transaction or of any savepoint, forgets every kept key (the
  rolled-back part may have made or retired one).
- **Uses.** Each seal counts one use in memory; just before ``COMMIT`` one ``UPDATE``
  per key adds them to ``encryption_count`` (:meth:`KeyUses.before_commit`). The count
  as read plus the uses not yet written is compared with the limit before every seal,
  so the limit holds exactly as if each use were written at once.
- **Rollbacks.** The uses of a transaction that rolled back (or failed to commit) are
  kept and added at the next commit: the values sealed then were used with a nonce
  under the key even though they were not stored, and counting a use too many is the
  safe direction for a nonce limit. Uses of a key whose row was rolled back with them
  are dropped at that commit (the ``UPDATE`` matches no row): no value sealed under
  that key was ever stored.

Unwrapped keys are held only inside their ``AESGCM`` objects, whose repr shows no key.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlcipher3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection

__all__ = ["KeyUses", "SealingKey"]

#: The driver's own execute: the cipher's bookkeeping is not timed by the monitor.
_execute = sqlcipher3.Connection.execute
#: What other connections committed, and schema changes, move (one statement).
_VERSIONS = (
    "SELECT data_version, (SELECT schema_version FROM pragma_schema_version) "
    "FROM pragma_data_version"
)


@dataclass(slots=True)
class SealingKey:
    """A user's primary data key, ready to seal with.

    Attributes:
        user_id: the key's owner.
        key_id: the key's id.
        header: the envelope header naming the key (version, algorithm, key id).
        aead: AES-256-GCM under the key (the key itself is not kept apart from it).
        recorded: ``field_keys.encryption_count`` as last read or written.
    """

    user_id: str
    key_id: uuid.UUID
    header: bytes
    aead: AESGCM = field(repr=False)
    recorded: int
    #: The key id as ``field_keys.id`` holds it.
    id_text: str = field(init=False)

    def __post_init__(self) -> None:
        self.id_text = str(self.key_id)


class KeyUses:
    """Kept primary keys and the key uses not yet written (see the module docstring).

    Told about every transaction by the writer, as a
    :class:`~mangostore.engine.writer.TransactionListener`.

    Args:
        lock: the field cipher's lock, held around every change of the ledger.
        limit: returns the use limit of one key (read at call time, so that tests can
            lower it).
    """

    def __init__(self, lock: threading.RLock, limit: Callable[[], int]) -> None:
        self._lock = lock
        self._limit = limit
        self._primary: dict[str, SealingKey] = {}
        #: key id -> uses not yet added to ``field_keys.encryption_count``.
        self._unrecorded: dict[str, int] = {}
        #: key id -> the key, for the keys counted since the last commit.
        self._used: dict[str, SealingKey] = {}
        #: Whether the kept keys were checked against other connections' commits in
        #: the current transaction.
        self._checked = False
        #: The writer connection's ``(data_version, schema_version)`` when they were
        #: last checked.
        self._version: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"<KeyUses {len(self._primary)} keys kept, {len(self._unrecorded)} to record>"

    # -- sealing --------------------------------------------------------------------------

    def check(self, conn: Connection) -> None:
        """Once per transaction, before its first seal: forget the kept keys if another
        connection has committed, or the schema changed, since they were last checked."""
        if self._checked:
            return
        with driver_errors("reading the data version"):
            row = _execute(conn, _VERSIONS).fetchone()
        version = (int(row[0]), int(row[1]))
        with self._lock:
            if version != self._version:
                self._primary.clear()
                self._version = version
            self._checked = True

    def ready(self, user_id: str, uses: int = 1) -> SealingKey | None:
        """Return the user's primary key if it is kept and can seal ``uses`` more values
        under the limit; ``None`` when it must be read (or made).

        Only valid after :meth:`check` in the current transaction.
        """
        key = self._primary.get(user_id)
        if key is None or not self._checked:
            return None
        if key.recorded + self._unrecorded.get(key.id_text, 0) + uses > self._limit():
            return None
        return key

    def unrecorded(self, key_id: str) -> int:
        """Uses of ``key_id`` counted here and not yet written to ``field_keys``."""
        return self._unrecorded.get(key_id, 0)

    def remember(self, key: SealingKey) -> None:
        """Use ``key`` for its user's values from now on."""
        with self._lock:
            self._primary[key.user_id] = key

    def count(self, key: SealingKey) -> None:
        """Count one use of ``key``: a nonce was drawn under it."""
        with self._lock:
            self._unrecorded[key.id_text] = self._unrecorded.get(key.id_text, 0) + 1
            self._used[key.id_text] = key

    def forget_user(self, user_id: str) -> None:
        """Stop using the user's kept key (rotated or destroyed)."""
        with self._lock:
            self._primary.pop(user_id, None)

    def forget_keys(self) -> None:
        """Stop using every kept key; the counts are kept."""
        with self._lock:
            self._primary.clear()

    # -- the writer's transaction events --------------------------------------------------

    def before_commit(self, conn: Connection) -> None:
        """Add the uses counted so far to ``field_keys``, in the committing transaction.

        Kept until the commit succeeds: a failed commit rolls these writes back, and
        the uses are written again at the next one.
        """
        with self._lock:
            if not self._unrecorded:
                return
            counts = [(uses, key_id) for key_id, uses in self._unrecorded.items()]
        with driver_errors("counting field key uses"):
            conn.executemany(
                "UPDATE field_keys SET encryption_count = encryption_count + ? WHERE id = ?",
                counts,
            )

    def savepoint_rolled_back(self) -> None:
        """A savepoint rolled back: a key it made or retired must be read again."""
        self.forget_keys()

    def ended(self, committed: bool) -> None:
        """The transaction ended. Committed: the kept keys' counts now include the uses
        it wrote. Rolled back: every kept key is forgotten, and its uses kept for the
        next commit."""
        with self._lock:
            self._checked = False
            if not committed:
                self._primary.clear()
                self._used.clear()
                return
            for key_id, key in self._used.items():
                key.recorded += self._unrecorded.get(key_id, 0)
            self._used.clear()
            self._unrecorded.clear()
