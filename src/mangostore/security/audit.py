"""The tamper-evident audit log: ``security_events`` as an append-only HMAC chain.

Every event gets the next sequence number (gap-free, assigned inside the writer's
transaction) and a MAC::

    mac[n] = HMAC-SHA256(audit key, mac[n-1] || canonical(event n))
    mac[0] = HMAC-SHA256(audit key, "mangostore/audit/genesis/v1")

where the audit key is the keyring's ``audit`` sub-key and ``canonical`` is an
unambiguous, type-tagged, length-prefixed encoding of ``seq, id, user_id,
event_type, severity, source_component, event_data, client_info, risk_score,
timestamp``. ``event_data`` and ``client_info`` enter the MAC as stored: AES-256-GCM
envelopes sealed under the data key of the event's subject (``user_id``), or under
the data key of the pseudo-user :data:`~mangostore.schema.sensitive.SYSTEM_OWNER`
for events about no user. Destroying a subject's key (erasure) therefore makes
their events unreadable without breaking the chain.

What is *not* covered by the MAC: ``resolved``, ``resolved_at`` and ``resolved_by``.
Resolving an event (:meth:`AuditLog.resolve`) appends a resolution event to the
chain *and* sets those columns (the only UPDATE the triggers allow);
:meth:`AuditLog.verify` checks that the columns agree with the chained resolutions.

Retention (:meth:`mangostore.privacy.PrivacyService.apply_retention`) removes a
prefix of the chain after appending an *anchor* event that names the last removed
sequence number and the MAC the first remaining event chains from; verification
then starts at the anchor's word, and the anchor itself is authenticated when the
walk reaches it.

Events written before the chain existed (rows migrated from an older schema) store no
MAC, but are chained all the same: their MACs are computed when needed, so the first
event appended after them vouches for them. Until then :meth:`AuditLog.verify` reports
them as not verified.

A database opened without a passphrase has no keyring, hence no audit key: its
events still get sequence numbers, but no MAC, and :meth:`AuditLog.verify` reports
that the log cannot be verified. A key stored in the same file would let anyone who
can edit the file recompute the chain, so none is made up.
"""

from __future__ import annotations

import hmac
import json
import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.errors import (
    ConfigurationError,
    InvalidTransitionError,
    InvalidValueError,
    JSONValueError,
    NotFoundError,
    TamperedDataError,
    ValidationError,
)
from mangostore.keys.envelope import length_prefixed
from mangostore.keys.field_cipher import FieldCipher, field_cipher_for
from mangostore.records import SecurityEvent
from mangostore.repos.base import new_id
from mangostore.repos.spec import table_spec
from mangostore.schema.sensitive import SYSTEM_OWNER
from mangostore.sql import placeholders

if TYPE_CHECKING:
    from mangostore.db import Database

__all__ = [
    "ANCHOR_COMPONENT",
    "ERASURE_COMPONENT",
    "RESERVED_PREFIX",
    "RESOLUTION_COMPONENT",
    "AuditCheckpoint",
    "AuditLog",
    "AuditReport",
    "canonical_event",
    "genesis_mac",
]

TABLE: Final = "security_events"
#: ``source_component`` values starting with this are written by mangostore only.
RESERVED_PREFIX: Final = "audit."
#: The anchor a retention run appends before removing the head of the chain.
ANCHOR_COMPONENT: Final = "audit.retention"
#: The event appended when another event is resolved.
RESOLUTION_COMPONENT: Final = "audit.resolution"
#: The event appended when a user is erased (it names no user).
ERASURE_COMPONENT: Final = "audit.erasure"

_LABEL: Final = b"mangostore/audit/v1"
_GENESIS: Final = b"mangostore/audit/genesis/v1"
_CHECKPOINT_LABEL: Final = b"mangostore/audit/checkpoint/v1"
_CHECKPOINT_FORMAT: Final = "mangostore-audit-checkpoint"
_MAC_BYTES: Final = 32
_BATCH_ROWS: Final = 2_000

_SPEC = table_spec(SecurityEvent)
_COLUMNS: Final = (
    "id",
    "user_id",
    "event_type",
    "severity",
    "source_component",
    "event_data",
    "client_info",
    "risk_score",
    "resolved",
    "resolved_at",
    "resolved_by",
    "timestamp",
    "seq",
    "mac",
)
_SELECT: Final = ", ".join(f'"{c}"' for c in _COLUMNS)
_INSERT: Final = f"INSERT INTO {TABLE} ({_SELECT}) VALUES ({placeholders(len(_COLUMNS))})"
# Column positions in rows selected with _SELECT.
_ID, _USER, _TYPE, _SEVERITY, _COMPONENT, _DATA, _CLIENT, _RISK = range(8)
_RESOLVED, _RESOLVED_AT, _RESOLVED_BY, _TIMESTAMP, _SEQ, _MAC = range(8, 14)


# -- the canonical encoding and the MAC ----------------------------------------------------


def _encode(value: Any) -> bytes:
    """Encode one value with a type tag and, for variable sizes, an 8-byte length."""
    if value is None:
        return b"\x00"
    if isinstance(value, bool):
        return b"\x05" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x02" + value.to_bytes(8, "big", signed=True)
    if isinstance(value, float):
        return b"\x03" + struct.pack(">d", value)
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        return b"\x01" + len(raw).to_bytes(8, "big") + raw
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return b"\x04" + len(raw).to_bytes(8, "big") + raw
    raise TypeError(f"cannot encode {type(value).__name__} for the audit chain")


def canonical_event(row: tuple[Any, ...] | list[Any]) -> bytes:
    """Return the bytes an event's MAC covers, from a row selected in column order.

    The encoding is unambiguous: every value carries a type tag (NULL, text, integer,
    real, blob) and text and blobs a length, so no two different events share one.
    ``resolved``, ``resolved_at``, ``resolved_by`` and the MAC itself are not covered.
    """
    parts = (
        row[_SEQ],
        row[_ID],
        row[_USER],
        row[_TYPE],
        row[_SEVERITY],
        row[_COMPONENT],
        row[_DATA],
        row[_CLIENT],
        row[_RISK],
        row[_TIMESTAMP],
    )
    return _LABEL + b"".join(_encode(p) for p in parts)


def _chain_mac(key: bytes, prev: bytes, row: tuple[Any, ...] | list[Any]) -> bytes:
    return hmac.digest(key, prev + canonical_event(row), "sha256")


def genesis_mac(key: bytes) -> bytes:
    """Return the value the first event of a chain is chained from."""
    return hmac.digest(key, _GENESIS, "sha256")


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The outcome of :meth:`AuditLog.verify`.

    Attributes:
        ok: the chain (and the checkpoint, when one was given) verified.
        events_checked: events whose MAC was checked before the walk ended.
        first_broken_seq: the first sequence number at which the log is wrong (an
            edited, inserted or moved event; the number of a deleted one; the first
            number missing at the end when checked against a checkpoint); ``None``
            when ``ok`` or when the log cannot be verified at all.
        reason: what was wrong, in words; ``None`` when ``ok``.
        first_seq: the sequence number the kept log starts at (above 1 after retention).
        last_seq: the last sequence number in the log.
        unsealed: events written before the chain existed (migrated rows, no MAC of
            their own; the first event with a MAC after them vouches for them).
        keyed: the database has an audit key (a keyring).
        checkpoint_seq: the sequence number of the checkpoint checked, if any.
    """

    ok: bool
    events_checked: int
    first_broken_seq: int | None
    reason: str | None
    first_seq: int | None = None
    last_seq: int | None = None
    unsealed: int = 0
    keyed: bool = True
    checkpoint_seq: int | None = None


@dataclass(frozen=True, slots=True)
class AuditCheckpoint:
    """The head of the chain at one moment, signed with the audit key.

    Keep it outside the database (another machine, a printout): a log truncated
    after it was taken is then detected by ``verify(checkpoint)``, which a chain
    alone cannot show. The signature covers every other field, so a checkpoint
    cannot be altered, or moved to another database, without detection.
    """

    vault_id: str
    seq: int
    mac: bytes
    created_at: int
    signature: bytes = field(repr=False)

    def to_json(self) -> str:
        """Serialise to a JSON object (hex for the binary fields)."""
        return json.dumps(
            {
                "format": _CHECKPOINT_FORMAT,
                "version": 1,
                "vault_id": self.vault_id,
                "seq": self.seq,
                "mac": self.mac.hex(),
                "created_at": self.created_at,
                "signature": self.signature.hex(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> AuditCheckpoint:
        """Read a checkpoint written by :meth:`to_json`; the signature is checked by verify.

        Raises:
            ValidationError: the text is not a well-formed checkpoint.
        """
        try:
            doc = json.loads(text)
        except (TypeError, ValueError, UnicodeDecodeError):
            raise ValidationError("the audit checkpoint is not valid JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != _CHECKPOINT_FORMAT:
            raise ValidationError("that is not a mangostore audit checkpoint")
        if doc.get("version") != 1:
            raise ValidationError(
                f"audit checkpoint version {doc.get('version')!r} is not supported"
            )
        vault_id, seq, created_at = doc.get("vault_id"), doc.get("seq"), doc.get("created_at")
        if not (isinstance(vault_id, str) and _is_count(seq) and _is_count(created_at)):
            raise ValidationError("the audit checkpoint is incomplete or malformed")
        assert isinstance(seq, int)
        assert isinstance(created_at, int)
        try:
            mac = bytes.fromhex(doc["mac"])
            signature = bytes.fromhex(doc["signature"])
        except (KeyError, TypeError, ValueError):
            raise ValidationError("the audit checkpoint's MAC or signature is malformed") from None
        if len(mac) != _MAC_BYTES or len(signature) != _MAC_BYTES:
            raise ValidationError("the audit checkpoint's MAC or signature has the wrong length")
        return cls(vault_id, seq, mac, created_at, signature)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _checkpoint_signature(key: bytes, vault_id: str, seq: int, mac: bytes, at: int) -> bytes:
    message = (
        _CHECKPOINT_LABEL + length_prefixed(vault_id) + _encode(seq) + _encode(mac) + _encode(at)
    )
    return hmac.digest(key, message, "sha256")


@dataclass
class _Walk:
    """State of one verification walk."""

    prev: bytes
    expected: int | None = None
    checked: int = 0
    unsealed: int = 0
    first_unsealed: int | None = None
    sealed_seen: bool = False
    first_seq: int | None = None
    last_seq: int | None = None
    broken: tuple[int, str] | None = None
    #: The MAC the first kept event chains from (the genesis value or an anchor's).
    start_prev: bytes | None = None
    #: The sequence number whose MAC a checkpoint names, and the MAC found for it.
    watch_seq: int | None = None
    watched_mac: bytes | None = None
    resolved: dict[str, tuple[int, str | None, int | None]] = field(default_factory=dict)
    resolutions: dict[str, tuple[int, Any, int]] = field(default_factory=dict)


# -- the service -----------------------------------------------------------------------------


class AuditLog:
    """``db.audit``: append events, resolve them, verify the chain, take checkpoints.

    Thread-safe: every write runs in the database's writer transaction, which
    serialises sequence numbers; reads of :meth:`verify` run in one snapshot.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

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
        return self._append(
            event_type,
            severity,
            source_component,
            user_id=user_id,
            event_data=event_data,
            client_info=client_info,
            risk_score=risk_score,
        )

    def _append(
        self,
        event_type: str,
        severity: str,
        source_component: str,
        *,
        user_id: str | None,
        event_data: Mapping[str, Any] | None,
        client_info: Mapping[str, Any] | None,
        risk_score: float,
    ) -> SecurityEvent:
        """Append without the reserved-component check (the log's own events)."""
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
        db = self._db
        key = self._key()
        cipher = field_cipher_for(db)
        with db.store.transaction() as conn:
            event_id = new_id()
            timestamp = db.clock.now_ms()
            seq, prev = _tip(conn)
            owner = user_id if user_id is not None else SYSTEM_OWNER
            stored_data = _seal(cipher, conn, "event_data", event_id, owner, data_text)
            stored_client = _seal(cipher, conn, "client_info", event_id, owner, client_text)
            row: list[Any] = [
                event_id,
                user_id,
                event_type,
                severity,
                source_component,
                stored_data,
                stored_client,
                risk,
                0,
                None,
                None,
                timestamp,
                seq,
                None,
            ]
            if key is not None:
                if prev is None and seq > 1:
                    prev = self.chain_mac_at(conn, seq - 1)  # the tip has no MAC of its own
                row[_MAC] = _chain_mac(key, prev if prev is not None else genesis_mac(key), row)
            with driver_errors("appending to the audit log"):
                conn.execute(_INSERT, row)
        return SecurityEvent(
            id=event_id,
            user_id=user_id,
            event_type=event_type,  # type: ignore[arg-type]
            severity=severity,  # type: ignore[arg-type]
            source_component=source_component,
            event_data=None if data_text is None else json.loads(data_text),
            client_info=None if client_text is None else json.loads(client_text),
            risk_score=risk,
            resolved=False,
            resolved_at=None,
            resolved_by=None,
            timestamp=timestamp,
            seq=seq,
            mac=row[_MAC],
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
            resolution = self._append(
                str(found[1]),
                "info",
                RESOLUTION_COMPONENT,
                user_id=None,
                event_data={"resolves": event_id, "resolved_by": resolved_by},
                client_info=None,
                risk_score=0.0,
            )
            with driver_errors("resolving a security event"):
                conn.execute(
                    f"UPDATE {TABLE} SET resolved = 1, resolved_at = ?, resolved_by = ? "
                    "WHERE id = ?",
                    (resolution.timestamp, resolved_by, event_id),
                )
            return self._get(conn, event_id)

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
            return self._get(conn, event_id)

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
        erased = self._erased()
        while remaining is None or remaining > 0:
            size = _BATCH_ROWS if remaining is None else min(_BATCH_ROWS, remaining)
            where = "seq > ?" + (" AND user_id = ?" if user_id is not None else "")
            params: tuple[Any, ...] = (after_seq,) if user_id is None else (after_seq, user_id)
            rows = self._db.query(
                f"SELECT {_SELECT} FROM {TABLE} WHERE {where} ORDER BY seq LIMIT ?",
                (*params, size),
            )
            for row in rows:
                yield self._build(tuple(row), erased)
            if len(rows) < size:
                return
            after_seq = int(rows[-1][_SEQ])
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
                tip = conn.execute(
                    f"SELECT seq, mac FROM {TABLE} ORDER BY seq DESC LIMIT 1"
                ).fetchone()
            seq = 0 if tip is None else int(tip[0])
            if tip is None:
                mac = genesis_mac(key)
            elif tip[1] is None:
                mac = self.chain_mac_at(conn, seq)
            else:
                mac = bytes(tip[1])
        at = self._db.clock.now_ms()
        signature = _checkpoint_signature(key, keyring.vault_id, seq, mac, at)
        return AuditCheckpoint(keyring.vault_id, seq, mac, at, signature)

    def verify(self, checkpoint: AuditCheckpoint | None = None) -> AuditReport:
        """Walk the chain and report the first sequence number at which it is broken.

        Detects an edited, inserted, deleted or moved event, resolution columns that
        disagree with the chained resolutions, and (given a ``checkpoint`` taken
        earlier) a log truncated at its end or rewritten since.

        Raises:
            TamperedDataError: ``checkpoint`` is forged, altered or belongs to another
                database: it is refused rather than trusted.
        """
        db = self._db
        key = self._key()
        if key is None:
            return AuditReport(
                ok=False,
                events_checked=0,
                first_broken_seq=None,
                reason=(
                    "this database has no keyring, so it has no audit key and its events "
                    "carry no MAC: the log cannot be verified"
                ),
                last_seq=_last_seq(db),
                keyed=False,
            )
        if checkpoint is not None:
            self._check_checkpoint(key, checkpoint)
        with db.store.snapshot() as conn:
            walk = self._walk(conn, key, None if checkpoint is None else checkpoint.seq)
            problems: list[tuple[int, str]] = []
            if walk.broken is not None:
                problems.append(walk.broken)
            problems += self._resolution_problems(conn, walk)
            if walk.broken is None and walk.first_unsealed is not None and not walk.sealed_seen:
                problems.append(
                    (
                        walk.first_unsealed,
                        f"events {walk.first_unsealed}..{walk.last_seq} carry no MAC and no "
                        "event with a MAC follows them: they predate the chain and nothing "
                        "was appended since (append an event to seal them), or their MACs "
                        "were removed",
                    )
                )
            if checkpoint is not None and walk.broken is None:
                problem = _checkpoint_problem(walk, checkpoint)
                if problem is not None:
                    problems.append(problem)
        first = min(problems) if problems else None
        return AuditReport(
            ok=first is None,
            events_checked=walk.checked,
            first_broken_seq=None if first is None else first[0],
            reason=None if first is None else first[1],
            first_seq=walk.first_seq,
            last_seq=walk.last_seq,
            unsealed=walk.unsealed,
            keyed=True,
            checkpoint_seq=None if checkpoint is None else checkpoint.seq,
        )

    def chain_mac_at(self, conn: Connection, seq: int) -> bytes:
        """Return the MAC that event ``seq`` carries, or for an event written before
        the chain existed the MAC it would carry; the next event chains from it.

        Raises:
            ConfigurationError: the database has no audit key.
        """
        key = self._require_key()
        with driver_errors("reading the audit log"):
            row = conn.execute(f"SELECT mac FROM {TABLE} WHERE seq = ?", (seq,)).fetchone()
        if row is not None and row[0] is not None:
            return bytes(row[0])
        walk = self._walk(conn, key, seq, until=seq)
        return walk.watched_mac if walk.watched_mac is not None else genesis_mac(key)

    def _walk(
        self, conn: Connection, key: bytes, watch_seq: int | None, *, until: int | None = None
    ) -> _Walk:
        genesis = genesis_mac(key)
        walk = _Walk(prev=genesis, watch_seq=watch_seq)
        with driver_errors("reading the audit log"):
            cursor = conn.execute(
                f"SELECT {_SELECT} FROM {TABLE} WHERE seq <= ? ORDER BY seq",
                (2**63 - 1 if until is None else until,),
            )
            while walk.broken is None:
                batch = cursor.fetchmany(_BATCH_ROWS)
                if not batch:
                    break
                for raw in batch:
                    row = tuple(raw)
                    if walk.expected is None:
                        start = self._start(conn, int(row[_SEQ]), genesis)
                        if isinstance(start, tuple):
                            walk.broken = start
                            break
                        walk.prev = walk.start_prev = start
                        walk.expected = walk.first_seq = int(row[_SEQ])
                    if not self._step(walk, key, row):
                        break
        return walk

    def _start(self, conn: Connection, first: int, genesis: bytes) -> bytes | tuple[int, str]:
        """Return the MAC the first kept event chains from, or the problem at the start."""
        if first == 1:
            return genesis
        anchors = self._anchors(conn, before=first)
        if anchors and anchors[0][0] == first - 1:
            return anchors[0][1]
        missing = anchors[0][0] + 1 if anchors else 1
        return (
            missing,
            f"events {missing}..{first - 1} are missing and no retention anchor accounts "
            "for them: they were deleted",
        )

    def _anchors(self, conn: Connection, *, before: int) -> list[tuple[int, bytes]]:
        """Return ``(removed through seq, chain-from MAC)`` of every readable anchor
        that removed events before ``before``, the latest removal first."""
        with driver_errors("reading the audit log"):
            rows = conn.execute(
                f"SELECT {_SELECT} FROM {TABLE} WHERE source_component = ? ORDER BY seq DESC",
                (ANCHOR_COMPONENT,),
            ).fetchall()
        found: list[tuple[int, bytes]] = []
        for raw in rows:
            data = self._system_data(tuple(raw))
            if data is None:
                continue
            through, chain_from = data.get("removed_through_seq"), data.get("chain_from")
            if not isinstance(through, int) or not isinstance(chain_from, str):
                continue
            try:
                mac = bytes.fromhex(chain_from)
            except ValueError:
                continue
            if through < before:
                found.append((through, mac))
        found.sort(key=lambda item: item[0], reverse=True)
        return found

    def _step(self, walk: _Walk, key: bytes, row: tuple[Any, ...]) -> bool:
        """Check one event; return whether the walk goes on."""
        seq = int(row[_SEQ])
        assert walk.expected is not None
        if seq != walk.expected:
            walk.broken = (walk.expected, f"event {walk.expected} is missing: it was deleted")
            return False
        stored = row[_MAC]
        if stored is None:
            if walk.sealed_seen:
                walk.broken = (seq, f"event {seq} has no MAC: it was inserted or altered")
                return False
            # Written before the chain existed: chained all the same, so the first event
            # with a MAC vouches for every one before it.
            walk.unsealed += 1
            if walk.first_unsealed is None:
                walk.first_unsealed = seq
            walk.prev = _chain_mac(key, walk.prev, row)
        else:
            walk.sealed_seen = True
            expected = _chain_mac(key, walk.prev, row)
            if not isinstance(stored, bytes) or not hmac.compare_digest(expected, stored):
                walk.broken = (
                    seq,
                    f"event {seq} does not match its MAC: it was edited, inserted, or moved "
                    "from another position",
                )
                return False
            walk.checked += 1
            walk.prev = stored
        if seq == walk.watch_seq:
            walk.watched_mac = walk.prev
        walk.last_seq = seq
        walk.expected = seq + 1
        if row[_RESOLVED]:
            walk.resolved[str(row[_ID])] = (seq, row[_RESOLVED_BY], row[_RESOLVED_AT])
        if row[_COMPONENT] == RESOLUTION_COMPONENT and stored is not None:
            data = self._system_data(row)
            if data is not None and isinstance(data.get("resolves"), str):
                walk.resolutions[data["resolves"]] = (seq, data.get("resolved_by"), row[_TIMESTAMP])
        return True

    def _resolution_problems(self, conn: Connection, walk: _Walk) -> list[tuple[int, str]]:
        """Compare the resolution columns with the chained resolution events."""
        problems: list[tuple[int, str]] = []
        # A resolution may lie beyond a break in the chain, where the walk stopped.
        resolved = walk.resolved if walk.broken is None else {}
        for event_id, (seq, by, at) in resolved.items():
            chained = walk.resolutions.get(event_id)
            if chained is None or chained[1] != by or chained[2] != at:
                problems.append(
                    (
                        seq,
                        f"event {seq} is marked resolved, but no resolution in the chain "
                        "says so: its resolution columns were edited",
                    )
                )
        for event_id, (res_seq, _, _) in walk.resolutions.items():
            if event_id in walk.resolved:
                continue
            with driver_errors("reading the audit log"):
                target = conn.execute(
                    f"SELECT seq FROM {TABLE} WHERE id = ?", (event_id,)
                ).fetchone()
            if target is not None:
                problems.append(
                    (
                        int(target[0]),
                        f"event {int(target[0])} was resolved (see event {res_seq}) but is "
                        "no longer marked resolved: its resolution columns were edited",
                    )
                )
        return problems

    def _check_checkpoint(self, key: bytes, checkpoint: AuditCheckpoint) -> None:
        keyring = self._db.keyring
        assert keyring is not None
        expected = _checkpoint_signature(
            key, checkpoint.vault_id, checkpoint.seq, checkpoint.mac, checkpoint.created_at
        )
        if checkpoint.vault_id != keyring.vault_id or not hmac.compare_digest(
            expected, checkpoint.signature
        ):
            raise TamperedDataError(
                "the audit checkpoint is not genuine: its signature does not match (it was "
                "altered, forged, or taken from another database); it was not used"
            )

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

    def _erased(self) -> frozenset[str]:
        keyring = self._db.keyring
        return frozenset() if keyring is None else frozenset(keyring.erased_users())

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

    def _get(self, conn: Connection, event_id: str) -> SecurityEvent:
        with driver_errors("reading the audit log"):
            row = conn.execute(
                f"SELECT {_SELECT} FROM {TABLE} WHERE id = ?", (event_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no security event has id {event_id!r}")
        return self._build(tuple(row), self._erased())

    def _open(self, row: tuple[Any, ...], index: int, erased: frozenset[str]) -> Any:
        """Return the plaintext of ``event_data`` or ``client_info`` of a stored row."""
        stored = row[index]
        if stored is None:
            return None
        cipher = field_cipher_for(self._db)
        if cipher is None:
            if isinstance(stored, str):
                return json.loads(stored)
            raise ConfigurationError(
                "this event's data is encrypted; open the database with its passphrase"
            )
        owner = row[_USER] if row[_USER] is not None else SYSTEM_OWNER
        try:
            plaintext = cipher.decrypt(TABLE, _COLUMNS[index], row[_ID], owner, stored)
        except TamperedDataError:
            if row[_USER] is not None and row[_USER] in erased:
                return None  # the subject was erased: their key is gone
            raise
        return json.loads(plaintext)

    def _system_data(self, row: tuple[Any, ...]) -> dict[str, Any] | None:
        """Return the data of one of the log's own events, or ``None`` if unreadable."""
        if row[_USER] is not None or not str(row[_COMPONENT]).startswith(RESERVED_PREFIX):
            return None
        try:
            data = self._open(row, _DATA, frozenset())
        except (TamperedDataError, ConfigurationError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _build(self, row: tuple[Any, ...], erased: frozenset[str]) -> SecurityEvent:
        return SecurityEvent(
            id=row[_ID],
            user_id=row[_USER],
            event_type=row[_TYPE],
            severity=row[_SEVERITY],
            source_component=row[_COMPONENT],
            event_data=self._open(row, _DATA, erased),
            client_info=self._open(row, _CLIENT, erased),
            risk_score=row[_RISK],
            resolved=None if row[_RESOLVED] is None else bool(row[_RESOLVED]),
            resolved_at=row[_RESOLVED_AT],
            resolved_by=row[_RESOLVED_BY],
            timestamp=row[_TIMESTAMP],
            seq=row[_SEQ],
            mac=None if row[_MAC] is None else bytes(row[_MAC]),
        )


# -- helpers ---------------------------------------------------------------------------------


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


def _tip(conn: Connection) -> tuple[int, bytes | None]:
    """Return the next sequence number and the MAC the next event chains from
    (``None``: from the genesis value)."""
    with driver_errors("reading the audit log"):
        row = conn.execute(f"SELECT seq, mac FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None:
        return 1, None
    return int(row[0]) + 1, None if row[1] is None else bytes(row[1])


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


def _last_seq(db: Database) -> int | None:
    row = db.query(f"SELECT max(seq) FROM {TABLE}")[0]
    return None if row[0] is None else int(row[0])


def _checkpoint_problem(walk: _Walk, checkpoint: AuditCheckpoint) -> tuple[int, str] | None:
    """Compare a verified walk with a (genuine) checkpoint."""
    last = walk.last_seq or 0
    if checkpoint.seq > last:
        return (
            last + 1,
            f"the log ends at event {last} but the checkpoint saw event {checkpoint.seq}: "
            "events were removed from its end",
        )
    if checkpoint.seq == 0:
        return None
    seen = walk.watched_mac
    if walk.first_seq is not None and checkpoint.seq == walk.first_seq - 1:
        seen = walk.start_prev  # the checkpoint names the last event retention removed
    if seen is not None and not hmac.compare_digest(seen, checkpoint.mac):
        return (
            checkpoint.seq,
            f"event {checkpoint.seq} differs from the checkpoint: the log was rewritten "
            "after the checkpoint was taken",
        )
    return None
