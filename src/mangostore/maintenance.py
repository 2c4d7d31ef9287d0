"""``db.maintenance()``: every periodic job of the library, in one call.

An application schedules this one call (every few minutes, or when it is idle)
instead of the half-dozen jobs it would otherwise run. The jobs, in the order they
run, with the :class:`MaintenanceReport` field that says what each did:

- ``kg_access`` (``access_counts``): writes the knowledge graph's buffered read counts.
- ``notifications`` (``deliveries``): delivers what is due (scheduled sends, retries)
  and cancels the deliveries of expired notifications.
- ``memory`` (``memory``): deletes memories expired or forgotten past the grace period.
- ``conversations`` (``conversations``): deletes the messages of expired conversations.
- ``sessions`` (``sessions``): deletes sessions that ended more than 30 days ago.
- ``login_attempts`` (``login_attempts``): forgets failed-login counts that no longer
  count towards a lock.
- ``notification_retention`` (``notifications_deleted``): deletes notifications older
  than their type's ``retention_days``.
- ``retention`` (``retention``): the retention policies: archives, then deletes, old
  command history and security events.
- ``files`` (``files``): removes the chunks of stored files no file uses any more (a
  deleted user's, a killed put's); skipped by a database that never stored a file.
- ``checkpoint`` (``checkpointed``): a passive WAL checkpoint, when a job deleted rows.

Why these and not others (docs/api-conventions.md says the same for users):

- The access counts are otherwise written only when the next read finds them old, or
  at close: a process that stops reading keeps them in memory indefinitely.
- Deliveries: a notification scheduled for later, or a failed delivery waiting for its
  retry, goes out only when something calls ``deliver_due``.
- The sweeps reclaim what is already hidden (expired memories and conversations are
  never returned), so skipping them loses no correctness, only space and privacy.
- The passive checkpoint copies the pages the jobs rewrote (zeroed by
  ``secure_delete``) into the database file, so deleted rows leave the file now rather
  than at SQLite's next automatic checkpoint. It never waits for other connections.
- Not run: ``VACUUM`` (rewrites the whole file under an exclusive lock; the performance
  report says when it pays), ``ANALYZE`` (the library's query plans were chosen and
  measured without statistics), embedding (loads a model; search embeds what it
  needs), sync compaction (each pull compacts; ``db.sync.start()`` schedules sync),
  audit checkpoints (their value must be kept outside the database, by the
  application), ``privacy.reapply_erasures`` (opening a database does it).

Every job runs, in the order above, each in its own transaction, as of one moment:
``now``. A job that fails with a :class:`~mangostore.errors.MangoError` (an in-memory
database with rows to archive and no ``archive_dir_path``, a locked database) does not
stop the others: its error is in :attr:`MaintenanceReport.failures` and logged as a
warning on the ``mangostore.maintenance`` logger. Other exceptions propagate.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from mangostore.clock import Clock, Instant, epoch_ms
from mangostore.errors import DatabaseError, MangoError

if TYPE_CHECKING:
    from mangostore.engine.store import Store
    from mangostore.filestore import FileService
    from mangostore.filestore.model import SweepReport
    from mangostore.kg.conversations import ConversationService
    from mangostore.kg.graph import KnowledgeGraph
    from mangostore.kg.memory import MemoryService, MemorySweep
    from mangostore.notify.dispatch import DeliveryReport
    from mangostore.notify.service import NotificationService
    from mangostore.privacy import PrivacyService, RetentionPolicy, RetentionReport
    from mangostore.security.auth import AuthService
    from mangostore.security.sessions import SessionService

__all__ = ["JOBS", "MaintainedDatabase", "MaintenanceReport", "run_maintenance"]

#: The jobs, in the order they run (the names used in :attr:`MaintenanceReport.failures`).
JOBS: Final = (
    "kg_access",
    "notifications",
    "memory",
    "conversations",
    "sessions",
    "login_attempts",
    "notification_retention",
    "retention",
    "files",
    "checkpoint",
)

_log = logging.getLogger("mangostore.maintenance")

T = TypeVar("T")


class MaintainedDatabase(Protocol):
    """What maintenance uses of the database: its store, clock, services and checkpoint."""

    @property
    def store(self) -> Store:
        """The connections (to refuse running inside a transaction)."""
        ...

    @property
    def clock(self) -> Clock:
        """Where ``now`` comes from when it is not given."""
        ...

    @property
    def kg(self) -> KnowledgeGraph:
        """The knowledge graph, whose read counts are flushed."""
        ...

    @property
    def memory(self) -> MemoryService:
        """AI memory, swept."""
        ...

    @property
    def conversations(self) -> ConversationService:
        """Conversations, swept."""
        ...

    @property
    def notify(self) -> NotificationService:
        """Notifications, delivered."""
        ...

    @property
    def privacy(self) -> PrivacyService:
        """Retention policies, applied."""
        ...

    @property
    def sessions(self) -> SessionService:
        """Sessions, swept."""
        ...

    @property
    def files(self) -> FileService:
        """Stored files, whose unused chunks the sweep removes."""
        ...

    @property
    def auth(self) -> AuthService:
        """The failed-login ledger, swept."""
        ...

    def checkpoint(self, *, truncate: bool = False) -> bool:
        """Copy the WAL into the database file; ``True`` when all of it was copied."""
        ...


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one :func:`run_maintenance` (``db.maintenance()``) did.

    A job that failed leaves its field at the default (``0`` or ``None``) and its
    error in ``failures``.

    Attributes:
        now: the moment every job ran as of (epoch ms).
        access_counts: knowledge-graph entities whose buffered read counts were written.
        deliveries: what the notification deliveries did.
        memory: memories deleted, by reason.
        conversations: conversations whose messages and data were deleted.
        sessions: ended sessions deleted.
        login_attempts: user names whose stale failed-login counts were forgotten.
        notifications_deleted: notifications older than their type's ``retention_days``.
        retention: what the retention policies archived and deleted, per table.
        files: what the sweep of stored files' chunks removed (``None``: no stored
            files, or it failed).
        checkpointed: ``None`` when no job deleted anything (no checkpoint was made);
            else whether the whole WAL was copied (``False``: a reader still used it).
        failures: the error of each job that failed, by job name (see :data:`JOBS`).
    """

    now: int
    access_counts: int = 0
    deliveries: DeliveryReport | None = None
    memory: MemorySweep | None = None
    conversations: int = 0
    sessions: int = 0
    login_attempts: int = 0
    notifications_deleted: int = 0
    retention: RetentionReport | None = None
    files: SweepReport | None = None
    checkpointed: bool | None = None
    failures: Mapping[str, MangoError] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every job succeeded."""
        return not self.failures

    @property
    def deleted(self) -> int:
        """How many rows the sweeps and the retention policies deleted, all together."""
        retained = 0 if self.retention is None else sum(t.deleted for t in self.retention.tables)
        swept = 0 if self.memory is None else self.memory.expired + self.memory.forgotten
        expired = self.conversations + self.sessions + self.notifications_deleted
        return swept + expired + self.login_attempts + retained


def run_maintenance(
    db: MaintainedDatabase,
    now: Instant | None = None,
    *,
    policies: Sequence[RetentionPolicy] | None = None,
    archive_dir_path: str | os.PathLike[str] | None = None,
) -> MaintenanceReport:
    """Run every periodic job of ``db`` once, as of ``now``; see the module docstring.

    Args:
        db: the database.
        now: the moment to run as of (epoch ms or an aware datetime; default the
            database clock).
        policies: the retention policies, as for
            :meth:`~mangostore.privacy.PrivacyService.apply_retention` (default:
            :data:`~mangostore.privacy.DEFAULT_POLICIES`).
        archive_dir_path: where retention writes archive files (default
            ``<database>.archive``; needed by an in-memory database with rows to archive).

    Returns:
        What each job did, and the errors of those that failed.

    Raises:
        InvalidValueError: ``now`` is not a time.
        DatabaseError: called inside a transaction (deliveries, archive files and the
            checkpoint cannot be rolled back with it).
    """
    at = epoch_ms(now, "now")
    if db.store.in_transaction():
        raise DatabaseError(
            "maintenance cannot run inside a transaction (deliveries, archive files and "
            "the WAL checkpoint cannot be rolled back): call it outside db.transaction()"
        )
    at = db.clock.now_ms() if at is None else at
    failures: dict[str, MangoError] = {}

    def run(job: str, work: Callable[[], T], default: T) -> T:
        try:
            return work()
        except MangoError as exc:
            _log.warning("maintenance job %s failed: %s", job, exc)
            failures[job] = exc
            return default

    access_counts = run("kg_access", db.kg.flush, 0)
    deliveries = run("notifications", lambda: db.notify.deliver_due(at), None)
    memory = run("memory", lambda: db.memory.sweep(at), None)
    conversations = run("conversations", lambda: db.conversations.sweep(at), 0)
    sessions = run("sessions", lambda: db.sessions.sweep(at), 0)
    login_attempts = run("login_attempts", lambda: db.auth.sweep(at), 0)
    # On its own, although retention deletes these too: retention may stop earlier,
    # at command history, for want of a place for its archive files.
    notifications_deleted = run("notification_retention", lambda: db.notify.apply_retention(at), 0)
    retention = run(
        "retention",
        lambda: db.privacy.apply_retention(at, policies, archive_dir_path=archive_dir_path),
        None,
    )
    files = run("files", lambda: db.files.sweep() if db.files.in_use() else None, None)
    report = MaintenanceReport(
        now=at,
        access_counts=access_counts,
        deliveries=deliveries,
        memory=memory,
        conversations=conversations,
        sessions=sessions,
        login_attempts=login_attempts,
        notifications_deleted=notifications_deleted,
        retention=retention,
        files=files,
    )
    checkpointed = run("checkpoint", db.checkpoint, None) if report.deleted else None
    return dataclasses.replace(report, checkpointed=checkpointed, failures=failures)
