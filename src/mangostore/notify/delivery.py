"""Deliverers, the interface every delivery method plugs into, retries, and the queue.

A deliverer takes one notification to one place (the desktop, the voice engine,
the log). mangostore ships the log deliverer and a recording test double; the
application registers its desktop and voice deliverers with
``db.notify.register_deliverer``. A deliverer that raises marks that delivery
failed; it is retried with exponential backoff until :attr:`RetryPolicy.max_attempts`.

The queue is the ``notification_deliveries`` table: one row per notification and
method, holding the attempts made, the last error and the time of the next
attempt. A delivery is *claimed* before it runs (its next attempt is pushed past a
lease), so two schedulers never run the same delivery, and one that died during a
delivery leaves it to be retried when the lease runs out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mangostore.errors import ConfigurationError, DeliveryError
from mangostore.ids import new_id
from mangostore.notify.ports import NotifyDatabase
from mangostore.notify.preferences import METHODS
from mangostore.records import Notification
from mangostore.sql import batches, placeholders

__all__ = [
    "LOGGER_NAME",
    "Claim",
    "Deliverer",
    "DeliveryQueue",
    "DeliveryState",
    "LogDeliverer",
    "Outcome",
    "Planned",
    "RecordingDeliverer",
    "RetryPolicy",
]

#: The logger :class:`LogDeliverer` writes to.
LOGGER_NAME = "mangostore.notify"

_log = logging.getLogger(LOGGER_NAME)
# A library does not print: without a handler configured by the application, the
# log deliverer's records go nowhere instead of to stderr through logging's last resort.
_log.addHandler(logging.NullHandler())
#: Longest error text kept for a failed attempt.
_ERROR_MAX_CHARS = 1_000
#: Rows bound per statement: two values a row, well under SQLite's variable limit.
_PAIRS_PER_STATEMENT = 400

_LEVELS = {
    "low": logging.DEBUG,
    "normal": logging.INFO,
    "high": logging.WARNING,
    "critical": logging.CRITICAL,
}


@runtime_checkable
class Deliverer(Protocol):
    """Delivers notifications by one method.

    Attributes:
        method: ``"desktop"``, ``"voice"`` or ``"log"``.
    """

    method: str

    def deliver(self, notification: Notification) -> None:
        """Deliver ``notification``; return only once it has been handed over.

        Raises:
            DeliveryError: it could not be delivered (it will be retried). Any other
                exception is treated the same way.
        """
        ...


class LogDeliverer:
    """Writes each notification as one line to the ``mangostore.notify`` logger.

    The level follows the priority (``low`` DEBUG, ``normal`` INFO, ``high``
    WARNING, ``critical`` CRITICAL). The line holds the id, user, type, priority,
    title and message, with control characters escaped so a message cannot forge
    log lines; never the (encrypted) ``metadata``.
    """

    method = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(LOGGER_NAME)

    def deliver(self, notification: Notification) -> None:
        """Log ``notification``."""
        self._logger.log(
            _LEVELS.get(notification.priority, logging.INFO),
            "notification %s user=%s type=%s priority=%s title=%s message=%s",
            notification.id,
            notification.user_id,
            notification.notification_type_id,
            notification.priority,
            _escape(notification.title),
            _escape(notification.message),
        )


class RecordingDeliverer:
    """A test double: remembers what it delivered and fails when told to.

    Attributes:
        method: the method it stands for.
        delivered: every notification handed over successfully, in order.
        attempts: how many times :meth:`deliver` was called.
    """

    def __init__(
        self, method: str, *, on_deliver: Callable[[Notification], None] | None = None
    ) -> None:
        self.method = method
        self.delivered: list[Notification] = []
        self.attempts = 0
        self._failures = 0
        self._reason = "deliverer failed"
        self._on_deliver = on_deliver
        self._lock = threading.Lock()

    def fail_next(self, times: int = 1, reason: str = "deliverer failed") -> None:
        """Make the next ``times`` deliveries raise :class:`DeliveryError` with ``reason``."""
        with self._lock:
            self._failures = times
            self._reason = reason

    def deliver(self, notification: Notification) -> None:
        """Record ``notification``, or raise if a failure was asked for.

        Raises:
            DeliveryError: :meth:`fail_next` asked for it.
        """
        with self._lock:
            self.attempts += 1
            if self._failures > 0:
                self._failures -= 1
                raise DeliveryError(self._reason)
        if self._on_deliver is not None:
            self._on_deliver(notification)
        with self._lock:
            self.delivered.append(notification)

    @property
    def ids(self) -> list[str]:
        """The ids of the notifications delivered, in order."""
        with self._lock:
            return [n.id for n in self.delivered]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed delivery is tried again.

    Attempt ``n`` (1-based) that fails is retried ``base_delay_ms * factor ** (n - 1)``
    later, capped at ``max_delay_ms``; after ``max_attempts`` attempts the delivery
    stays ``failed`` for good (it is kept, never dropped).

    Attributes:
        max_attempts: attempts before giving up (at least 1).
        base_delay_ms: wait after the first failure.
        factor: growth of the wait per further failure (at least 1).
        max_delay_ms: the longest wait.
        claim_timeout_ms: how long a delivery in progress is reserved for the process
            running it; past that (the process died mid-delivery) it is tried again.
    """

    max_attempts: int = 5
    base_delay_ms: int = 30_000
    factor: float = 2.0
    max_delay_ms: int = 3_600_000
    claim_timeout_ms: int = 300_000

    def __post_init__(self) -> None:
        for name in ("max_attempts", "base_delay_ms", "max_delay_ms", "claim_timeout_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"RetryPolicy.{name} must be a non-negative integer")
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be at least 1")
        if not isinstance(self.factor, int | float) or not self.factor >= 1:
            raise ConfigurationError("RetryPolicy.factor must be a number of at least 1")

    def delay_ms(self, attempt: int) -> int:
        """Return the wait after failed attempt number ``attempt`` (1-based)."""
        # Capping the exponent first keeps huge attempt numbers from overflowing floats.
        exponent = min(max(attempt - 1, 0), 64)
        return int(min(self.base_delay_ms * self.factor**exponent, self.max_delay_ms))

    def next_attempt_at(self, attempt: int, now_ms: int) -> int | None:
        """Return when to try again after failed attempt ``attempt``, or ``None`` to give up."""
        if attempt >= self.max_attempts:
            return None
        return now_ms + self.delay_ms(attempt)


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """Where the delivery of a notification by one method stands.

    Attributes:
        method: ``desktop``, ``voice`` or ``log``.
        status: ``pending``, ``delivered``, ``failed`` or ``cancelled``.
        attempt: attempts made so far.
        error: why the last attempt failed (or why the delivery was cancelled).
        attempted_at: when the last attempt started (epoch ms).
        next_attempt_at: when it is tried next, or ``None`` if never again.
    """

    method: str
    status: str
    attempt: int
    error: str | None
    attempted_at: int | None
    next_attempt_at: int | None


@dataclass(frozen=True, slots=True)
class Planned:
    """A delivery to queue: by ``method`` at ``due`` (epoch ms).

    ``claim`` queues it already claimed, to run at once; ``cancelled`` queues it
    cancelled for that reason (it never runs).
    """

    method: str
    due: int
    claim: bool = False
    cancelled: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery reserved for this process: run it, then record the outcome."""

    row_id: str
    notification_id: str
    method: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a claimed delivery went: ``error`` is ``None`` on success."""

    claim: Claim
    error: str | None


class DeliveryQueue:
    """The ``notification_deliveries`` rows of one database.

    Every method runs in the caller's transaction (or its own), except :meth:`run`,
    which calls deliverers and touches no table.
    """

    def __init__(self, db: NotifyDatabase, retry: RetryPolicy) -> None:
        self._db = db
        self.retry = retry

    def add(self, notification_id: str, planned: Sequence[Planned], now: int) -> list[Claim]:
        """Queue the deliveries of a notification, in one statement.

        Returns:
            The deliveries planned with ``claim``: born claimed, to run at once.
        """
        if not planned:
            return []
        lease = now + self.retry.claim_timeout_ms
        values: list[Any] = []
        claims: list[Claim] = []
        for item in planned:
            row_id = new_id()
            if item.cancelled is not None:
                values += (row_id, notification_id, item.method, 0, "cancelled", item.cancelled)
                values += (None, None, now)
            elif item.claim:
                values += (row_id, notification_id, item.method, 1, "pending", None)
                values += (now, lease, now)
                claims.append(Claim(row_id, notification_id, item.method, 1))
            else:
                values += (row_id, notification_id, item.method, 0, "pending", None)
                values += (None, item.due, now)
        rows = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(planned))
        self._db.execute(
            "INSERT INTO notification_deliveries (id, notification_id, method, attempt, status, "
            f"error, attempted_at, next_attempt_at, created_at) VALUES {rows}",
            values,
        )
        return claims

    def claim_due(self, at: int, methods: Sequence[str], limit: int) -> list[Claim]:
        """Claim up to ``limit`` deliveries by ``methods`` due at ``at``.

        Only deliveries of notifications still ``pending`` or ``failed`` are claimed.
        Call inside a transaction, so the claims commit together.
        """
        if not methods:
            return []
        marks = placeholders(len(methods))
        # CROSS JOIN keeps the deliveries as the outer loop, read through their
        # next-attempt index: the due rows are few, the notifications many.
        rows = self._db.query(
            "SELECT d.id, d.notification_id, d.method, d.attempt FROM notification_deliveries d "
            "CROSS JOIN notifications n ON n.id = d.notification_id "
            "WHERE d.next_attempt_at IS NOT NULL AND d.next_attempt_at <= ? "
            f"AND d.method IN ({marks}) AND n.status IN ('pending', 'failed') "
            "ORDER BY d.next_attempt_at, d.id LIMIT ?",
            (at, *methods, limit),
        )
        claims: list[Claim] = []
        lease = at + self.retry.claim_timeout_ms
        for row_id, notification_id, method, attempt in rows:
            taken = self._db.execute(
                "UPDATE notification_deliveries SET attempt = attempt + 1, attempted_at = ?, "
                "next_attempt_at = ? WHERE id = ? AND attempt = ?",
                (at, lease, row_id, attempt),
            )
            if taken:
                claims.append(Claim(row_id, notification_id, method, attempt + 1))
        return claims

    def cancel_expired(self, at: int, reason: str) -> int:
        """Cancel the due deliveries of notifications expired at ``at``; return how many."""
        return self._db.execute(
            "UPDATE notification_deliveries SET status = 'cancelled', error = ?, "
            "next_attempt_at = NULL WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ? "
            "AND EXISTS (SELECT 1 FROM notifications n "
            "WHERE n.id = notification_deliveries.notification_id "
            "AND n.expires_at IS NOT NULL AND n.expires_at <= ?)",
            (reason, at, at),
        )

    def cancel(self, notification_id: str, reason: str) -> int:
        """Cancel every delivery of a notification not made yet; return how many."""
        return self._db.execute(
            "UPDATE notification_deliveries SET status = 'cancelled', error = ?, "
            "next_attempt_at = NULL WHERE notification_id = ? "
            "AND status IN ('pending', 'failed')",
            (reason, notification_id),
        )

    @staticmethod
    def run(
        deliverers: Mapping[str, Deliverer],
        notifications: Mapping[str, Notification],
        claims: Sequence[Claim],
    ) -> list[Outcome]:
        """Call the deliverers for ``claims``; call it outside any transaction."""
        outcomes: list[Outcome] = []
        for claim in claims:
            deliverer = deliverers.get(claim.method)
            notification = notifications.get(claim.notification_id)
            if notification is None:
                error: str | None = "the notification was deleted before delivery"
            elif deliverer is None:
                error = f"no deliverer is registered for {claim.method!r}"
            else:
                error = _attempt(deliverer, notification)
            outcomes.append(Outcome(claim, error))
        return outcomes

    def record(self, outcomes: Sequence[Outcome], now: int) -> list[str]:
        """Store outcomes: delivered, or failed with the next attempt after backoff.

        A claim that outlived its lease and was taken over by another run (its
        ``attempt`` moved on) does not overwrite the newer attempt's outcome.

        Returns:
            The ids of the notifications concerned, each once, in order.
        """
        delivered = [o.claim for o in outcomes if o.error is None]
        for chunk in batches(delivered, _PAIRS_PER_STATEMENT):
            pairs = ", ".join(["(?, ?)"] * len(chunk))
            self._db.execute(
                "UPDATE notification_deliveries SET status = 'delivered', error = NULL, "
                f"next_attempt_at = NULL WHERE (id, attempt) IN (VALUES {pairs}) "
                "AND status <> 'cancelled'",
                [v for c in chunk for v in (c.row_id, c.attempt)],
            )
        for outcome in outcomes:
            if outcome.error is None:
                continue
            claim = outcome.claim
            retry_at = self.retry.next_attempt_at(claim.attempt, now)
            _log.warning(
                "delivery of notification %s by %s failed (attempt %d%s): %s",
                claim.notification_id,
                claim.method,
                claim.attempt,
                "" if retry_at is not None else ", giving up",
                outcome.error,
            )
            self._db.execute(
                "UPDATE notification_deliveries SET status = 'failed', error = ?, "
                "next_attempt_at = ? WHERE id = ? AND attempt = ? AND status <> 'cancelled'",
                (outcome.error, retry_at, claim.row_id, claim.attempt),
            )
        return list(dict.fromkeys(o.claim.notification_id for o in outcomes))

    def states(self, notification_id: str) -> list[DeliveryState]:
        """Return the delivery of a notification by each of its methods."""
        rows = self._db.query(
            "SELECT method, status, attempt, error, attempted_at, next_attempt_at "
            "FROM notification_deliveries WHERE notification_id = ?",
            (notification_id,),
        )
        order = METHODS
        return sorted(
            (DeliveryState(*tuple(r)) for r in rows),
            key=lambda s: order.index(s.method) if s.method in order else len(order),
        )


def _attempt(deliverer: Deliverer, notification: Notification) -> str | None:
    """Deliver once; return ``None`` on success or the reason it failed."""
    try:
        deliverer.deliver(notification)
    except Exception as exc:
        # A broken deliverer must not lose the notification: any exception is a
        # failed attempt, retried like a DeliveryError.
        reason = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
        return (reason or type(exc).__name__)[:_ERROR_MAX_CHARS]
    return None


def _escape(text: str) -> str:
    """Escape control characters (newlines included) so the text stays on one log line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


if TYPE_CHECKING:
    # Both implementations must keep conforming to the protocol.
    _log_conforms: Deliverer = LogDeliverer()
    _recording_conforms: Deliverer = RecordingDeliverer("desktop")
