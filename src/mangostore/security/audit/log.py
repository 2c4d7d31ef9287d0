"""``db.audit``: appending events to the chain, resolving them, reading them back.

Every event gets the next sequence number (gap-free, assigned inside the writer's
transaction) and the MAC chained from the event before it (:mod:`.chain`). Checking
the chain is :mod:`.verify`'s; signed heads of the chain are :mod:`.checkpoints`'.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import (
    ConfigurationError,
    DatabaseError,
    InvalidTransitionError,
    InvalidValueError,
    JSONValueError,
    NotFoundError,
)
from mangostore.ids import new_id
from mangostore.keys.field_cipher import FieldCipher
from mangostore.records import SecurityEvent
from mangostore.repos.spec import table_spec
from mangostore.schema.sensitive import SYSTEM_OWNER
from mangostore.security.audit.chain import (
    BATCH_ROWS,
    INSERT,
    RESERVED_PREFIX,
    RESOLUTION_COMPONENT,
    SELECT,
    TABLE,
    Col,
    chain_mac,
    genesis_mac,
    tip,
)
from mangostore.security.audit.checkpoints import AuditCheckpoint, check_genuine, sign_checkpoint
from mangostore.security.audit.rows import EventReader
from mangostore.security.audit.verify import (
    AuditReport,
    chain_mac_at,
    unverifiable_report,
    verify_chain,
)

if TYPE_CHECKING:
    from mangostore.security.ports import AuditDatabase

__all__ = ["AuditLog"]

_SPEC = table_spec(SecurityEvent)


@dataclass(frozen=True, slots=True)
class _Pending:
    """An event checked and serialised, ready to be numbered, sealed and chained."""

    event_type: str
    severity: str
    source_component: str
    user_id: str | None
    data_text: str | None
    client_text: str | None
    risk: float


class AuditLog:
    """``db.audit``: append events, resolve them, verify the chain, take checkpoints.

    Thread-safe: every write runs in the database's writer transaction, which
    serialises sequence numbers; reads of :meth:`verify` run in one snapshot.
    """

    def __init__(self, db: AuditDatabase) -> None:
        self._db = db
        self._reader = EventReader(db)

    def __repr__(self) -> str:
        return f"<AuditLog {self._db.path!r}>"

    # -- writing ------------------------------------------------------------------------

    def append(
        self,
        event_type: str,
        severity: str,
        source_component: str,
        *,
        user_id: str | None = None,
        event_data: Mapping[str, Any] | None = None,
        client_info: Mapping[str, Any] | None = None,
        risk_score: float = 0.0,
    ) -> SecurityEvent:
        """Append one event to the log and return it (with its data as plaintext).

        Joins the caller's ``with db.transaction():`` when there is one (the event
        then commits or rolls back with it), else runs in its own transaction.

        Args:
            event_type: ``auth``, ``access``, ``command``, ``voice`` or ``data``.
            severity: ``info``, ``warning``, ``error`` or ``critical``.
            source_component: what reported the event (e.g. ``"auth"``); names
                starting with ``"audit."`` are reserved for the log's own events.
            user_id: the subject of the event; its ``event_data`` and ``client_info``
                are sealed under this user's data key, so erasing the user makes them
                unreadable. Events with no subject are sealed under a system key.
            event_data, client_info: JSON objects (at most ``Settings.json_max_bytes``
                each once serialised).
            risk_score: a finite, non-negative number.

        Returns:
            The stored event, with ``seq`` and ``mac`` set (``mac`` is ``None`` for a
            database without a keyring).

        Raises:
            InvalidValueError: an enumerated value, the component, the user id or
                the risk score is wrong.
            JSONValueError: the data is not a JSON object or is too large.
            KeyManagementError: ``user_id`` was erased and data was given for them.
        """
        if isinstance(source_component, str) and source_component.startswith(RESERVED_PREFIX):
            raise InvalidValueError(
                f"source_component names starting with {RESERVED_PREFIX!r} are reserved "
                "for the audit log's own events",
                field="source_component",
            )
        pending = self._prepare(
            event_type, severity, source_component, user_id, event_data, client_info, risk_score
        )
        with self._db.store.transaction() as conn:
            event = self._insert(conn, pending)
        return event

    def append_reserved_in(
        self,
        conn: Connection,
        event_type: str,
        source_component: str,
        event_data: Mapping[str, Any],
    ) -> SecurityEvent:
        """Append one of the log's own events inside the caller's write transaction.

        For mangostore's own records, under a reserved ``"audit."`` component that
        :meth:`append` refuses: the retention anchor
        (:data:`~mangostore.security.audit.ANCHOR_COMPONENT`) and the erasure record
        (:data:`~mangostore.security.audit.ERASURE_COMPONENT`) of
        :class:`~mangostore.privacy.PrivacyService`. The event names no user (its data
        is sealed under the system key, and :meth:`verify` reads anchors only from
        such events), has severity ``info`` and risk 0. It commits or rolls back with
        the caller's transaction, together with the change it records.

        Args:
            conn: the connection of the caller's ``db.store.transaction()``.
            event_type: as :meth:`append`.
            source_component: a reserved component other than
                ``audit.resolution`` (resolutions are :meth:`resolve`'s).
            event_data: a JSON object, as :meth:`append`.

        Returns:
            The stored event, as :meth:`append` returns it.

        Raises:
            DatabaseError: the calling thread is not inside a write transaction.
            InvalidValueError: the component is not reserved, or is the resolution
                component; an enumerated value is wrong.
            JSONValueError: as :meth:`append`.
        """
        if not self._db.store.in_transaction():
            raise DatabaseError(
                "append_reserved_in() needs the caller's write transaction: call it inside "
                "db.store.transaction()"
            )
        if (
            not isinstance(source_component, str)
            or not source_component.startswith(RESERVED_PREFIX)
            or source_component == RESOLUTION_COMPONENT
        ):
            raise InvalidValueError(
                f"append_reserved_in() takes a component starting with {RESERVED_PREFIX!r} "
                f"other than {RESOLUTION_COMPONENT!r}; use append() for other events",
                field="source_component",
            )
        pending = self._prepare(event_type, "info", source_component, None, event_data, None, 0.0)
        return self._insert(conn, pending)

    def _prepare(
        self,
        event_type: str,
        severity: str,
        source_component: str,
        user_id: str | None,
        event_data: Mapping[str, Any] | None,
        client_info: Mapping[str, Any] | None,
        risk_score: float,
    ) -> _Pending:
        """Check an event and serialise its data, before any lock is taken."""
        _SPEC.column("event_type").check(TABLE, event_type)
        _SPEC.column("severity").check(TABLE, severity)
        _SPEC.column("source_component").check(TABLE, source_component)
        if not source_component:
            raise InvalidValueError(
                "security_events.source_component must not be empty", field="source_component"
            )
        if user_id is not None and (not isinstance(user_id, str) or not user_id):
            raise InvalidValueError(
                "security_events.user_id must be a non-empty string or None", field="user_id"
            )
        risk = _risk(risk_score)
        data_text = self._dump("event_data", event_data)
        client_text = self._dump("client_info", client_info)
        return _Pending(
            event_type, severity, source_component, user_id, data_text, client_text, risk
        )

    def _insert(self, conn: Connection, event: _Pending) -> SecurityEvent:
        """Number, seal, chain and insert a prepared event in transaction ``conn``."""
        db = self._db
        key = self._key()
        cipher = db.store.field_cipher
        event_id = new_id()
        timestamp = db.clock.now_ms()
        seq, prev = tip(conn)
        owner = event.user_id if event.user_id is not None else SYSTEM_OWNER
        stored_data = _seal(cipher, conn, "event_data", event_id, owner, event.data_text)
        stored_client = _seal(cipher, conn, "client_info", event_id, owner, event.client_text)
        row: list[Any] = [
            event_id,
            event.user_id,
            event.event_type,
            event.severity,
            event.source_component,
            stored_data,
            stored_client,
            event.risk,
            0,
            None,
            None,
            timestamp,
            seq,
            None,
        ]
        if key is not None:
            if prev is None and seq > 1:
                prev = chain_mac_at(conn, key, self._reader, seq - 1)  # the tip has no MAC
            row[Col.MAC] = chain_mac(key, prev if prev is not None else genesis_mac(key), row)
        with driver_errors("appending to the audit log"):
            conn.execute(INSERT, row)
        return SecurityEvent(
            id=event_id,
            user_id=event.user_id,
            event_type=event.event_type,  # type: ignore[arg-type]
            severity=event.severity,  # type: ignore[arg-type]
            source_component=event.source_component,
            event_data=None if event.data_text is None else json.loads(event.data_text),
            client_info=None if event.client_text is None else json.loads(event.client_text),
            risk_score=event.risk,
            resolved=False,
            resolved_at=None,
            resolved_by=None,
            timestamp=timestamp,
            seq=seq,
            mac=row[Col.MAC],
        )

    def resolve(self, event_id: str, resolved_by: str) -> SecurityEvent:
        """Mark an event resolved by ``resolved_by``; return it as now stored.

        The resolution is appended to the chain as an event of its own (component
        ``audit.resolution``, naming the event and the resolver), and the event's
        ``resolved``, ``resolved_at`` and ``resolved_by`` columns are set: the one
        change the triggers allow, and one that :meth:`verify` checks against the
        chained resolution. Joins the caller's transaction, if any.

        Raises:
            NotFoundError: no event has this id.
            InvalidTransitionError: the event is already resolved (resolutions are
                final), or it is itself a resolution.
            InvalidValueError: ``resolved_by`` is not a non-empty string.
        """
        if not isinstance(resolved_by, str) or not resolved_by:
            raise InvalidValueError("resolved_by must be a non-empty string", field="resolved_by")
        with self._db.store.transaction() as conn:
            with driver_errors("reading the audit log"):
                found = conn.execute(
                    f"SELECT resolved, event_type, source_component FROM {TABLE} WHERE id = ?",
                    (event_id,),
                ).fetchone()
            if found is None:
                raise NotFoundError(f"no security event has id {event_id!r}")
            if found[0]:
                raise InvalidTransitionError(
                    f"security event {event_id!r} is already resolved; resolutions are final"
                )
            if found[2] == RESOLUTION_COMPONENT:
                raise InvalidTransitionError("a resolution event cannot itself be resolved")
            pending = self._prepare(
                str(found[1]),
                "info",
                RESOLUTION_COMPONENT,
                None,
                {"resolves": event_id, "resolved_by": resolved_by},
                None,
                0.0,
            )
            resolution = self._insert(conn, pending)
            with driver_errors("resolving a security event"):
                conn.execute(
                    f"UPDATE {TABLE} SET resolved = 1, resolved_at = ?, resolved_by = ? "
                    "WHERE id = ?",
                    (resolution.timestamp, resolved_by, event_id),
                )
            return self._reader.get(conn, event_id)

    # -- reading ------------------------------------------------------------------------

    def get(self, event_id: str) -> SecurityEvent:
        """Return one event with its data decrypted.

        Data whose subject was erased comes back as ``None``.

        Raises:
            NotFoundError: no event has this id.
            TamperedDataError: a value does not authenticate (and its subject was not
                erased).
        """
        with self._db.store.reading() as conn:
            return self._reader.get(conn, event_id)

    def events(
        self,
        *,
        user_id: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[SecurityEvent]:
        """Return events in chain order, with their data decrypted.

        Args:
            user_id: only the events about this user.
            after_seq: only events with a larger sequence number.
            limit: at most this many events.

        Raises:
            TamperedDataError: as for :meth:`get`.
        """
        return list(self.iter_events(user_id=user_id, after_seq=after_seq, limit=limit))

    def iter_events(
        self,
        *,
        user_id: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> Iterator[SecurityEvent]:
        """Yield events as :meth:`events` returns them, reading in batches."""
        remaining = limit
        erased = self._reader.erased()
        while remaining is None or remaining > 0:
            size = BATCH_ROWS if remaining is None else min(BATCH_ROWS, remaining)
            where = "seq > ?" + (" AND user_id = ?" if user_id is not None else "")
            params: tuple[Any, ...] = (after_seq,) if user_id is None else (after_seq, user_id)
            rows = self._db.query(
                f"SELECT {SELECT} FROM {TABLE} WHERE {where} ORDER BY seq LIMIT ?",
                (*params, size),
            )
            for row in rows:
                yield self._reader.build(tuple(row), erased)
            if len(rows) < size:
                return
            after_seq = int(rows[-1][Col.SEQ])
            if remaining is not None:
                remaining -= len(rows)

    def count(self) -> int:
        """Return how many events the log holds."""
        return int(self._db.query(f"SELECT count(*) FROM {TABLE}")[0][0])

    # -- verification ---------------------------------------------------------------------

    def checkpoint(self) -> AuditCheckpoint:
        """Return the signed head of the chain (sequence 0 for an empty log).

        Raises:
            ConfigurationError: the database has no keyring, hence no audit key.
        """
        key = self._require_key()
        keyring = self._db.keyring
        assert keyring is not None
        with self._db.store.snapshot() as conn:
            with driver_errors("reading the audit log"):
                head = conn.execute(
                    f"SELECT seq, mac FROM {TABLE} ORDER BY seq DESC LIMIT 1"
                ).fetchone()
            seq = 0 if head is None else int(head[0])
            if head is None:
                mac = genesis_mac(key)
            elif head[1] is None:
                mac = chain_mac_at(conn, key, self._reader, seq)
            else:
                mac = bytes(head[1])
        return sign_checkpoint(key, keyring.vault_id, seq, mac, self._db.clock.now_ms())

    def verify(self, checkpoint: AuditCheckpoint | None = None) -> AuditReport:
        """Walk the chain and report the first sequence number at which it is broken.

        Detects an edited, inserted, deleted or moved event, resolution columns that
        disagree with the chained resolutions, and (given a ``checkpoint`` taken
        earlier) a log truncated at its end or rewritten since.

        Raises:
            TamperedDataError: ``checkpoint`` is forged, altered or belongs to another
                database: it is refused rather than trusted.
        """
        key = self._key()
        if key is None:
            return unverifiable_report(self._db)
        if checkpoint is not None:
            keyring = self._db.keyring
            assert keyring is not None
            check_genuine(key, keyring.vault_id, checkpoint)
        with self._db.store.snapshot() as conn:
            return verify_chain(conn, key, self._reader, checkpoint)

    def chain_mac_at(self, conn: Connection, seq: int) -> bytes:
        """Return the MAC that event ``seq`` carries, or for an event written before
        the chain existed the MAC it would carry; the next event chains from it.

        Raises:
            ConfigurationError: the database has no audit key.
        """
        return chain_mac_at(conn, self._require_key(), self._reader, seq)

    # -- internals ------------------------------------------------------------------------

    def _key(self) -> bytes | None:
        keyring = self._db.keyring
        return None if keyring is None else keyring.subkey("audit")

    def _require_key(self) -> bytes:
        key = self._key()
        if key is None:
            raise ConfigurationError(
                "this database was opened without a passphrase, so it has no audit key: "
                "its log cannot be checkpointed or verified"
            )
        return key

    def _dump(self, name: str, value: Mapping[str, Any] | None) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise JSONValueError(
                f"security_events.{name} must be a JSON object (a mapping) or None", field=name
            )
        try:
            text = json.dumps(
                dict(value), ensure_ascii=False, allow_nan=False, separators=(",", ":")
            )
            size = len(text.encode("utf-8"))
        except (TypeError, ValueError) as exc:
            raise JSONValueError(
                f"security_events.{name} must be JSON-serialisable: {exc}", field=name
            ) from None
        except RecursionError:
            raise JSONValueError(
                f"security_events.{name} is nested too deeply to store", field=name
            ) from None
        limit = self._db.settings.json_max_bytes
        if size > limit:
            raise JSONValueError(
                f"security_events.{name} is larger than the {limit}-byte limit "
                "(Settings.json_max_bytes)",
                field=name,
            )
        return text


def _risk(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValueError(
            f"risk_score must be a number, not {type(value).__name__}", field="risk_score"
        )
    risk = float(value)
    if not math.isfinite(risk) or risk < 0:
        raise InvalidValueError(
            "risk_score must be a finite, non-negative number", field="risk_score"
        )
    return risk


def _seal(
    cipher: FieldCipher | None,
    conn: Connection,
    column: str,
    row_id: str,
    owner: str,
    text: str | None,
) -> str | bytes | None:
    if text is None:
        return None
    if cipher is None:
        return text  # a database without a keyring stores the JSON text as it is
    return cipher.encrypt(conn, TABLE, column, row_id, owner, text.encode("utf-8"))
