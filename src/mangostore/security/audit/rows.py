"""Stored audit events back to records: opening sealed data, building :class:`SecurityEvent`.

``event_data`` and ``client_info`` are stored as AES-256-GCM envelopes sealed under
the data key of the event's subject, or of
:data:`~mangostore.schema.sensitive.SYSTEM_OWNER` for events about no user (as JSON
text in a database without a keyring). Reading them is needed both to list events
and, for the log's own events (anchors, resolutions), to verify the chain.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import ConfigurationError, NotFoundError, TamperedDataError
from mangostore.records import SecurityEvent
from mangostore.schema.sensitive import SYSTEM_OWNER
from mangostore.security.audit.chain import COLUMNS, RESERVED_PREFIX, SELECT, TABLE, Col

if TYPE_CHECKING:
    from mangostore.security.ports import CipherDatabase

__all__ = ["EventReader"]


class EventReader:
    """Reads the stored events of one database (its cipher and its keyring's erasures).

    Thread-safe: it holds no state of its own.
    """

    def __init__(self, db: CipherDatabase) -> None:
        self._db = db

    def erased(self) -> frozenset[str]:
        """Return the ids of the users whose data keys were destroyed."""
        keyring = self._db.keyring
        return frozenset() if keyring is None else frozenset(keyring.erased_users())

    def get(self, conn: Connection, event_id: str) -> SecurityEvent:
        """Return one event read on ``conn``, with its data decrypted.

        Raises:
            NotFoundError: no event has this id.
            TamperedDataError: a value does not authenticate (and its subject was not
                erased).
        """
        with driver_errors("reading the audit log"):
            row = conn.execute(f"SELECT {SELECT} FROM {TABLE} WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no security event has id {event_id!r}")
        return self.build(tuple(row), self.erased())

    def build(self, row: tuple[Any, ...], erased: frozenset[str]) -> SecurityEvent:
        """Return the event of a row selected with :data:`~.chain.SELECT`.

        Args:
            row: the stored row.
            erased: the erased users (see :meth:`erased`): their data reads as ``None``.

        Raises:
            TamperedDataError: as :meth:`get`.
        """
        return SecurityEvent(
            id=row[Col.ID],
            user_id=row[Col.USER],
            event_type=row[Col.TYPE],
            severity=row[Col.SEVERITY],
            source_component=row[Col.COMPONENT],
            event_data=self.open(row, Col.DATA, erased),
            client_info=self.open(row, Col.CLIENT, erased),
            risk_score=row[Col.RISK],
            resolved=None if row[Col.RESOLVED] is None else bool(row[Col.RESOLVED]),
            resolved_at=row[Col.RESOLVED_AT],
            resolved_by=row[Col.RESOLVED_BY],
            timestamp=row[Col.TIMESTAMP],
            seq=row[Col.SEQ],
            mac=None if row[Col.MAC] is None else bytes(row[Col.MAC]),
        )

    def open(self, row: tuple[Any, ...], index: int, erased: frozenset[str]) -> Any:
        """Return the plaintext of ``event_data`` or ``client_info`` of a stored row.

        Args:
            row: the stored row.
            index: :attr:`Col.DATA` or :attr:`Col.CLIENT`.
            erased: the erased users: their data reads as ``None``.

        Raises:
            ConfigurationError: the value is encrypted and the database has no keyring.
            TamperedDataError: the value does not authenticate, and its subject was not
                erased.
        """
        stored = row[index]
        if stored is None:
            return None
        cipher = self._db.store.field_cipher
        if cipher is None:
            if isinstance(stored, str):
                return json.loads(stored)
            raise ConfigurationError(
                "this event's data is encrypted; open the database with its passphrase"
            )
        owner = row[Col.USER] if row[Col.USER] is not None else SYSTEM_OWNER
        try:
            plaintext = cipher.decrypt(TABLE, COLUMNS[index], row[Col.ID], owner, stored)
        except TamperedDataError:
            if row[Col.USER] is not None and row[Col.USER] in erased:
                return None  # the subject was erased: their key is gone
            raise
        return json.loads(plaintext)

    def system_data(self, row: tuple[Any, ...]) -> dict[str, Any] | None:
        """Return the data of one of the log's own events, or ``None`` if unreadable.

        Only events that name no user and carry a reserved component qualify: any
        other row is ``None``, so an event appended through the public API can never
        pass for an anchor or a resolution.
        """
        if row[Col.USER] is not None or not str(row[Col.COMPONENT]).startswith(RESERVED_PREFIX):
            return None
        try:
            data = self.open(row, Col.DATA, frozenset())
        except (TamperedDataError, ConfigurationError, ValueError):
            return None
        return data if isinstance(data, dict) else None
