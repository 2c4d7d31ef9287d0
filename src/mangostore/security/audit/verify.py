"""Verifying the audit chain: one walk from the first kept event to the head.

The walk starts from the genesis value, or, after retention removed a prefix of the
chain, from the MAC named by the retention anchor that accounts for the removed
events (the anchor itself is authenticated when the walk reaches it). Events written
before the chain existed carry no MAC and are chained all the same, so the first
event with a MAC vouches for them. Resolution columns, which no MAC covers, are
compared with the resolution events in the chain.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mangostore.engine.connection import driver_errors
from mangostore.engine.pragmas import Connection
from mangostore.security.audit.chain import (
    ANCHOR_COMPONENT,
    BATCH_ROWS,
    RESOLUTION_COMPONENT,
    SELECT,
    TABLE,
    Col,
    chain_mac,
    genesis_mac,
)
from mangostore.security.audit.checkpoints import AuditCheckpoint
from mangostore.security.audit.rows import EventReader

if TYPE_CHECKING:
    from mangostore.security.ports import QueryDatabase

__all__ = ["AuditReport", "chain_mac_at", "unverifiable_report", "verify_chain"]


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


def unverifiable_report(db: QueryDatabase) -> AuditReport:
    """Return the report of a database without a keyring: nothing can be verified."""
    row = db.query(f"SELECT max(seq) FROM {TABLE}")[0]
    return AuditReport(
        ok=False,
        events_checked=0,
        first_broken_seq=None,
        reason=(
            "this database has no keyring, so it has no audit key and its events "
            "carry no MAC: the log cannot be verified"
        ),
        last_seq=None if row[0] is None else int(row[0]),
        keyed=False,
    )


def verify_chain(
    conn: Connection, key: bytes, reader: EventReader, checkpoint: AuditCheckpoint | None
) -> AuditReport:
    """Walk the chain read on ``conn`` (one snapshot) and report its first problem.

    Args:
        conn: a connection inside one read transaction.
        key: the audit key.
        reader: reads the log's own events (anchors, resolutions).
        checkpoint: a checkpoint already found genuine, or ``None``.
    """
    walk = _walk(conn, key, reader, None if checkpoint is None else checkpoint.seq)
    problems: list[tuple[int, str]] = []
    if walk.broken is not None:
        problems.append(walk.broken)
    problems += _resolution_problems(conn, walk)
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


def chain_mac_at(conn: Connection, key: bytes, reader: EventReader, seq: int) -> bytes:
    """Return the MAC event ``seq`` carries, or, for an event written before the
    chain existed, the MAC it would carry (computed by walking up to it)."""
    with driver_errors("reading the audit log"):
        row = conn.execute(f"SELECT mac FROM {TABLE} WHERE seq = ?", (seq,)).fetchone()
    if row is not None and row[0] is not None:
        return bytes(row[0])
    walk = _walk(conn, key, reader, seq, until=seq)
    return walk.watched_mac if walk.watched_mac is not None else genesis_mac(key)


def _walk(
    conn: Connection,
    key: bytes,
    reader: EventReader,
    watch_seq: int | None,
    *,
    until: int | None = None,
) -> _Walk:
    genesis = genesis_mac(key)
    walk = _Walk(prev=genesis, watch_seq=watch_seq)
    with driver_errors("reading the audit log"):
        cursor = conn.execute(
            f"SELECT {SELECT} FROM {TABLE} WHERE seq <= ? ORDER BY seq",
            (2**63 - 1 if until is None else until,),
        )
        while walk.broken is None:
            batch = cursor.fetchmany(BATCH_ROWS)
            if not batch:
                break
            for raw in batch:
                row = tuple(raw)
                if walk.expected is None:
                    start = _start(conn, reader, int(row[Col.SEQ]), genesis)
                    if isinstance(start, tuple):
                        walk.broken = start
                        break
                    walk.prev = walk.start_prev = start
                    walk.expected = walk.first_seq = int(row[Col.SEQ])
                if not _step(walk, key, reader, row):
                    break
    return walk


def _start(
    conn: Connection, reader: EventReader, first: int, genesis: bytes
) -> bytes | tuple[int, str]:
    """Return the MAC the first kept event chains from, or the problem at the start."""
    if first == 1:
        return genesis
    anchors = _anchors(conn, reader, before=first)
    if anchors and anchors[0][0] == first - 1:
        return anchors[0][1]
    missing = anchors[0][0] + 1 if anchors else 1
    return (
        missing,
        f"events {missing}..{first - 1} are missing and no retention anchor accounts "
        "for them: they were deleted",
    )


def _anchors(conn: Connection, reader: EventReader, *, before: int) -> list[tuple[int, bytes]]:
    """Return ``(removed through seq, chain-from MAC)`` of every readable anchor
    that removed events before ``before``, the latest removal first."""
    with driver_errors("reading the audit log"):
        rows = conn.execute(
            f"SELECT {SELECT} FROM {TABLE} WHERE source_component = ? ORDER BY seq DESC",
            (ANCHOR_COMPONENT,),
        ).fetchall()
    found: list[tuple[int, bytes]] = []
    for raw in rows:
        data = reader.system_data(tuple(raw))
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


def _step(walk: _Walk, key: bytes, reader: EventReader, row: tuple[Any, ...]) -> bool:
    """Check one event; return whether the walk goes on."""
    seq = int(row[Col.SEQ])
    assert walk.expected is not None
    if seq != walk.expected:
        walk.broken = (walk.expected, f"event {walk.expected} is missing: it was deleted")
        return False
    stored = row[Col.MAC]
    if stored is None:
        if walk.sealed_seen:
            walk.broken = (seq, f"event {seq} has no MAC: it was inserted or altered")
            return False
        # Written before the chain existed: chained all the same, so the first event
        # with a MAC vouches for every one before it.
        walk.unsealed += 1
        if walk.first_unsealed is None:
            walk.first_unsealed = seq
        walk.prev = chain_mac(key, walk.prev, row)
    else:
        walk.sealed_seen = True
        expected = chain_mac(key, walk.prev, row)
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
    if row[Col.RESOLVED]:
        walk.resolved[str(row[Col.ID])] = (seq, row[Col.RESOLVED_BY], row[Col.RESOLVED_AT])
    if row[Col.COMPONENT] == RESOLUTION_COMPONENT and stored is not None:
        data = reader.system_data(row)
        if data is not None and isinstance(data.get("resolves"), str):
            walk.resolutions[data["resolves"]] = (
                seq,
                data.get("resolved_by"),
                row[Col.TIMESTAMP],
            )
    return True


def _resolution_problems(conn: Connection, walk: _Walk) -> list[tuple[int, str]]:
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
            target = conn.execute(f"SELECT seq FROM {TABLE} WHERE id = ?", (event_id,)).fetchone()
        if target is not None:
            problems.append(
                (
                    int(target[0]),
                    f"event {int(target[0])} was resolved (see event {res_seq}) but is "
                    "no longer marked resolved: its resolution columns were edited",
                )
            )
    return problems


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
