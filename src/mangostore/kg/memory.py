"""``db.memory``: what the assistant remembers about a user, with history, recall and forgetting.

A memory is a value (any JSON) under a key, for a user and optionally a project. Its
identity is ``(user, project, key)``: remembering a new value for the same identity
*supersedes* the current memory, which stays readable through :meth:`MemoryService.history`
instead of being overwritten or kept side by side with the new one.

Recall ranks the current memories by

    score = relevance x confidence x recency x scope

* ``relevance``: 1 for a recall by key; for a recall by query, the FTS5 ``bm25`` score of
  the memory (key matches weigh :data:`KEY_WEIGHT` times value matches) divided by the
  best score among the candidates, so the best match has relevance 1;
* ``confidence``: the memory's ``confidence_score`` (1 when NULL);
* ``recency``: ``floor + (1 - floor) * 0.5 ** (age / half_life)``, where ``age`` is the
  time since the memory was created or last recalled, whichever is later. With the
  defaults (:class:`MemoryPolicy`: half-life 30 days, floor 0.5) a memory untouched for
  30 days keeps 75 % of its weight and an old one never drops below half;
* ``scope``: 1, or :attr:`MemoryPolicy.global_weight` (0.8) for a user-wide memory when
  the recall asks about a project, so the project's own memory wins a tie.

Every recall counts access: one ``UPDATE`` per call stamps ``last_accessed`` and adds 1 to
``access_count`` of every memory it returns.

A memory past ``expires_at``, or forgotten, is hidden at once from recall, history and
listing; :meth:`MemoryService.sweep` deletes it for good after a grace period
(:attr:`MemoryPolicy.purge_grace_ms`, 7 days). Deleting a memory by any path also
deletes its full-text entry (triggers of migration 10).

The ranking itself is :func:`mangostore.kg.memory_recall.rank`; the checks of the
arguments, and the memory types and sources allowed, are in
:mod:`mangostore.kg.memory_checks`. Both are re-exported here where they were before.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mangostore.clock import Duration, Instant, epoch_ms
from mangostore.errors import InvalidValueError, NotFoundError
from mangostore.kg.inputs import checks_text_arguments
from mangostore.kg.memory_checks import (
    KEY_MAX_CHARS,
    MEMORY_TYPES,
    SOURCES,
    check_choice,
    check_confidence,
    check_key,
    is_int,
    sql_limit,
    ttl_ms,
)
from mangostore.kg.memory_recall import (
    DAY_MS,
    K_MAX,
    KEY_WEIGHT,
    MemoryPolicy,
    Recall,
    fts_query,
    rank,
)
from mangostore.records import AIMemory
from mangostore.sql import batches, placeholders, quote_identifier

if TYPE_CHECKING:
    from mangostore.kg.ports import MemoryDatabase

__all__ = [
    "DAY_MS",
    "KEY_MAX_CHARS",
    "KEY_WEIGHT",
    "MEMORY_TYPES",
    "SOURCES",
    "MemoryPolicy",
    "MemoryService",
    "MemorySweep",
    "Recall",
    "fts_query",
]


@dataclass(frozen=True, slots=True)
class MemorySweep:
    """What one :meth:`MemoryService.sweep` deleted.

    Attributes:
        expired: memories whose ``expires_at`` was more than the grace period ago.
        forgotten: memories forgotten more than the grace period ago (and not counted
            as expired).
    """

    expired: int = 0
    forgotten: int = 0


@checks_text_arguments
class MemoryService:
    """The AI memory of one database: reach it as ``db.memory``.

    Args:
        db: the database.
        policy: ranking and retention; ``db.memory.policy`` may be replaced at any time.
    """

    def __init__(self, db: MemoryDatabase, policy: MemoryPolicy | None = None) -> None:
        self._db = db
        self.policy = policy or MemoryPolicy()
        spec = db.ai_memory.spec
        self._columns = ", ".join(f"m.{quote_identifier(n)}" for n in spec.names)

    def __repr__(self) -> str:
        return f"<MemoryService of {self._db!r}>"

    # -- writing ---------------------------------------------------------------------------

    def remember(
        self,
        user_id: str,
        key: str,
        value: Any,
        *,
        memory_type: str = "fact",
        confidence: float = 1.0,
        ttl: Duration | None = None,
        project_id: str | None = None,
        conversation_id: str | None = None,
        source: str | None = None,
    ) -> AIMemory:
        """Remember ``value`` under ``key`` for the user (and project, if given).

        A different value (or type) for the same ``(user, project, key)`` supersedes the
        current memory, which becomes history. The same value and type again adds no
        version: the current memory is reinforced instead (its confidence becomes the
        higher of the two, its expiry follows ``ttl``, ``last_accessed`` becomes now).

        Args:
            user_id: the user.
            key: a non-empty name of at most :data:`KEY_MAX_CHARS` characters.
            value: any JSON-serialisable value (at most ``Settings.json_max_bytes``).
            memory_type: one of :data:`MEMORY_TYPES`.
            confidence: from 0 to 1.
            ttl: how long the memory lives (milliseconds, or a ``timedelta``);
                ``None`` for ever.
            project_id: the project the memory belongs to; ``None`` for user-wide.
            conversation_id: the conversation it was learnt in.
            source: one of :data:`SOURCES`, or ``None``.

        Returns:
            The current memory: the new one, or the reinforced one.

        Raises:
            InvalidValueError: a bad key, type, source, confidence or ttl; a surrogate.
            JSONValueError: the value is not JSON-serialisable or too large.
            ForeignKeyError: the user, project or conversation does not exist.
        """
        check_key(key)
        check_choice("memory_type", memory_type, MEMORY_TYPES)
        if source is not None:
            check_choice("source", source, SOURCES)
        confidence = check_confidence(confidence)
        lifetime = ttl_ms(ttl)
        canonical = _canonical(value)
        with self._db.transaction():
            now = self._db.clock.now_ms()
            expires_at = None if lifetime is None else now + lifetime
            current = self._select(
                f"SELECT {self._columns} FROM ai_memory AS m "
                "JOIN ai_memory_state AS s ON s.memory_id = m.id "
                "WHERE m.user_id = ? AND m.key_name = ? AND m.project_id IS ? "
                f"AND {_VISIBLE} ORDER BY m.created_at DESC, s.seq DESC LIMIT 1",
                (user_id, key, project_id, now),
            )
            if (
                current
                and canonical is not None
                and current[0].memory_type == memory_type
                and _canonical(current[0].value_data) == canonical
            ):
                return self._reinforce(current[0], confidence, expires_at, now)
            memory = self._db.ai_memory.create(
                user_id=user_id,
                project_id=project_id,
                conversation_id=conversation_id,
                memory_type=memory_type,
                key_name=key,
                value_data=value,
                confidence_score=confidence,
                source=source,
                created_at=now,
                access_count=0,
                expires_at=expires_at,
            )
            # Every earlier version still standing becomes history, including an
            # expired one, so the chain of versions stays whole.
            self._db.execute(
                "UPDATE ai_memory_state SET superseded_by = ?, superseded_at = ? "
                "WHERE superseded_at IS NULL AND forgotten_at IS NULL AND memory_id IN ("
                "SELECT id FROM ai_memory WHERE user_id = ? AND key_name = ? "
                "AND project_id IS ? AND id != ?)",
                (memory.id, now, user_id, key, project_id, memory.id),
            )
        return memory

    def forget(
        self,
        user_id: str,
        key: str | None = None,
        *,
        id: str | None = None,
        project_id: str | None = None,
        purge: bool = False,
    ) -> int:
        """Forget a memory: hide it now, delete it after the grace period (or now).

        With ``key``, every version of ``(user, project, key)`` is forgotten, history
        included. With ``id``, only that memory: if it was current, the key has no
        current value afterwards (the version before it does not come back).

        Args:
            user_id: the user.
            key: the key to forget (with ``project_id``: ``None`` means user-wide).
            id: one memory's id, instead of ``key``.
            project_id: the project of ``key``.
            purge: delete at once instead of after the grace period.

        Returns:
            How many memories were forgotten (or deleted).

        Raises:
            InvalidValueError: neither or both of ``key`` and ``id`` were given.
            NotFoundError: ``id`` is not a memory of this user.
        """
        if (key is None) == (id is None):
            raise InvalidValueError("forget() takes a key or an id (one of them)", field="key")
        with self._db.transaction():
            now = self._db.clock.now_ms()
            if id is not None:
                rows = self._db.query(
                    "SELECT id FROM ai_memory WHERE id = ? AND user_id = ?", (id, user_id)
                )
                if not rows:
                    raise NotFoundError(f"user {user_id!r} has no memory with id {id!r}")
            else:
                rows = self._db.query(
                    "SELECT m.id FROM ai_memory AS m "
                    "JOIN ai_memory_state AS s ON s.memory_id = m.id "
                    "WHERE m.user_id = ? AND m.key_name = ? AND m.project_id IS ? "
                    "AND s.forgotten_at IS NULL",
                    (user_id, key, project_id),
                )
            ids = [str(r[0]) for r in rows]
            if purge:
                return self._delete(ids)
            done = 0
            for chunk in batches(ids):
                done += self._db.execute(
                    "UPDATE ai_memory_state SET forgotten_at = ? WHERE forgotten_at IS NULL "
                    f"AND memory_id IN ({placeholders(len(chunk))})",
                    (now, *chunk),
                )
            return done

    def sweep(self, now: Instant | None = None) -> MemorySweep:
        """Delete memories that expired or were forgotten more than the grace period ago.

        Hidden memories need no sweep to be hidden: this only reclaims them. Their
        full-text entries go with them.

        Args:
            now: the time to sweep as of (epoch ms or an aware datetime); default
                the database's clock.

        Returns:
            How many memories were deleted, by reason.

        Raises:
            InvalidValueError: ``now`` is not a time.
        """
        moment = epoch_ms(now, "now")
        with self._db.transaction():
            at = self._db.clock.now_ms() if moment is None else moment
            cutoff = at - self.policy.purge_grace_ms
            expired = [
                str(r[0])
                for r in self._db.query("SELECT id FROM ai_memory WHERE expires_at <= ?", (cutoff,))
            ]
            forgotten = [
                str(r[0])
                for r in self._db.query(
                    "SELECT s.memory_id FROM ai_memory_state AS s "
                    "JOIN ai_memory AS m ON m.id = s.memory_id "
                    "WHERE s.forgotten_at <= ? AND (m.expires_at IS NULL OR m.expires_at > ?)",
                    (cutoff, cutoff),
                )
            ]
            return MemorySweep(expired=self._delete(expired), forgotten=self._delete(forgotten))

    # -- reading ---------------------------------------------------------------------------

    def recall(
        self,
        user_id: str,
        key: str | None = None,
        *,
        query: str | None = None,
        k: int = 10,
        project_id: str | None = None,
        memory_type: str | None = None,
    ) -> builtins.list[Recall]:
        """Return the user's current memories for ``key``, or those matching ``query``, best first.

        See the module documentation for the ranking. Expired, forgotten and superseded
        memories are never returned. Every memory returned has its access counted.

        Args:
            user_id: the user.
            key: an exact key.
            query: words to look for in keys and values (instead of ``key``). Any text is
                safe: only its words are searched for, each as a literal.
            k: most memories returned (1 to 1000).
            project_id: recall about a project: its memories and the user-wide ones
                (``None``: every memory of the user).
            memory_type: only memories of this type.

        Returns:
            At most ``k`` results, highest score first; empty when a query has no words.

        Raises:
            InvalidValueError: neither or both of ``key`` and ``query``, or a bad ``k``
                or ``memory_type``.
        """
        if (key is None) == (query is None):
            raise InvalidValueError("recall() takes a key or a query (one of them)", field="key")
        if not is_int(k) or not 1 <= k <= K_MAX:
            raise InvalidValueError(f"k must be an integer from 1 to {K_MAX}", field="k")
        if memory_type is not None:
            check_choice("memory_type", memory_type, MEMORY_TYPES)
        now = self._db.clock.now_ms()
        where, params = self._filters(user_id, project_id, memory_type, now)
        if key is not None:
            if not isinstance(key, str):
                raise InvalidValueError("key must be a string", field="key")
            rows = self._db.query(
                f"SELECT {self._columns} FROM ai_memory AS m "
                "JOIN ai_memory_state AS s ON s.memory_id = m.id "
                f"WHERE m.key_name = ? AND {where}",
                (key, *params),
            )
            found = [(self._build(row), 1.0) for row in rows]
        else:
            assert query is not None
            match = fts_query(query)
            if match is None:
                return []
            rows = self._db.query(
                f"SELECT {self._columns}, -bm25(ai_memory_fts, ?, 1.0) AS strength "
                "FROM ai_memory_fts AS f "
                "JOIN ai_memory_state AS s ON s.seq = f.rowid "
                "JOIN ai_memory AS m ON m.id = s.memory_id "
                f"WHERE ai_memory_fts MATCH ? AND {where} "
                "ORDER BY strength DESC LIMIT ?",
                (KEY_WEIGHT, match, *params, self.policy.candidates),
            )
            best = max((float(r["strength"]) for r in rows), default=0.0)
            found = [
                (self._build(row), float(row["strength"]) / best if best > 0 else 1.0)
                for row in rows
            ]
        ranked = rank(found, policy=self.policy, project_id=project_id, now=now, k=k)
        return self._count_access(ranked, now)

    def history(
        self,
        user_id: str,
        key: str,
        *,
        project_id: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[AIMemory]:
        """Return the superseded versions of ``(user, project, key)``, newest first.

        The current version is not included (see :meth:`recall`); expired and
        forgotten versions are hidden. Reading history does not count access.

        Raises:
            InvalidValueError: ``limit`` is not a positive integer.
        """
        now = self._db.clock.now_ms()
        return self._select(
            f"SELECT {self._columns} FROM ai_memory AS m "
            "JOIN ai_memory_state AS s ON s.memory_id = m.id "
            "WHERE m.user_id = ? AND m.key_name = ? AND m.project_id IS ? "
            "AND s.superseded_at IS NOT NULL AND s.forgotten_at IS NULL "
            "AND (m.expires_at IS NULL OR m.expires_at > ?) "
            "ORDER BY m.created_at DESC, s.seq DESC LIMIT ?",
            (user_id, key, project_id, now, sql_limit(limit)),
        )

    def list(
        self,
        user_id: str,
        *,
        memory_type: str | None = None,
        project_id: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[AIMemory]:
        """Return the user's current memories, by key (user-wide before project ones).

        Listing does not count access.

        Args:
            user_id: the user.
            memory_type: only this type.
            project_id: only this project's memories and the user-wide ones
                (``None``: all of them).
            limit: at most this many.

        Raises:
            InvalidValueError: a bad ``memory_type`` or ``limit``.
        """
        if memory_type is not None:
            check_choice("memory_type", memory_type, MEMORY_TYPES)
        now = self._db.clock.now_ms()
        where, params = self._filters(user_id, project_id, memory_type, now)
        return self._select(
            f"SELECT {self._columns} FROM ai_memory AS m "
            "JOIN ai_memory_state AS s ON s.memory_id = m.id "
            f"WHERE {where} "
            "ORDER BY m.key_name, m.project_id IS NOT NULL, m.project_id, m.created_at DESC "
            "LIMIT ?",
            (*params, sql_limit(limit)),
        )

    # -- internals -------------------------------------------------------------------------

    def _filters(
        self, user_id: str, project_id: str | None, memory_type: str | None, now: int
    ) -> tuple[str, builtins.list[Any]]:
        clauses = ["m.user_id = ?", _VISIBLE]
        params: builtins.list[Any] = [user_id, now]
        if project_id is not None:
            clauses.append("(m.project_id = ? OR m.project_id IS NULL)")
            params.append(project_id)
        if memory_type is not None:
            clauses.append("m.memory_type = ?")
            params.append(memory_type)
        return " AND ".join(clauses), params

    def _count_access(self, ranked: builtins.list[Recall], now: int) -> builtins.list[Recall]:
        if not ranked:
            return ranked
        ids = [r.memory.id for r in ranked]
        # One statement for the whole recall, so a recall is one small write.
        self._db.execute(
            "UPDATE ai_memory SET access_count = COALESCE(access_count, 0) + 1, "
            f"last_accessed = ? WHERE id IN ({placeholders(len(ids))})",
            (now, *ids),
        )
        return [
            dataclasses.replace(
                r,
                memory=dataclasses.replace(
                    r.memory, access_count=(r.memory.access_count or 0) + 1, last_accessed=now
                ),
            )
            for r in ranked
        ]

    def _reinforce(
        self, memory: AIMemory, confidence: float, expires_at: int | None, now: int
    ) -> AIMemory:
        stronger = max(confidence, memory.confidence_score or 0.0)
        self._db.execute(
            "UPDATE ai_memory SET confidence_score = ?, expires_at = ?, last_accessed = ? "
            "WHERE id = ?",
            (stronger, expires_at, now, memory.id),
        )
        return dataclasses.replace(
            memory, confidence_score=stronger, expires_at=expires_at, last_accessed=now
        )

    def _delete(self, ids: Sequence[str]) -> int:
        done = 0
        with self._db.transaction():
            for chunk in batches(ids):
                done += self._db.execute(
                    f"DELETE FROM ai_memory WHERE id IN ({placeholders(len(chunk))})", chunk
                )
        return done

    def _select(self, sql: str, params: Sequence[Any]) -> builtins.list[AIMemory]:
        return [self._build(row) for row in self._db.query(sql, params)]

    def _build(self, row: Any) -> AIMemory:
        count = len(self._db.ai_memory.spec.names)
        return self._db.ai_memory.record_from_row(tuple(row)[:count])


#: A memory is visible (current, and shown) when it is neither superseded nor forgotten
#: and has not expired as of the bound time.
_VISIBLE = (
    "s.superseded_at IS NULL AND s.forgotten_at IS NULL "
    "AND (m.expires_at IS NULL OR m.expires_at > ?)"
)


def _canonical(value: Any) -> str | None:
    """The value as sorted-key JSON, to compare versions; ``None`` if it is not JSON."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None  # the repository refuses it with the precise error
