"""What the file store returns: records of files, usage, and check reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CheckReport", "FileRecord", "FileUsage", "SweepReport"]


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A stored file (its bytes are read with ``db.files.open`` or ``read``).

    Attributes:
        id: the file's id (a UUIDv7).
        user_id: the owner, whose data key seals the file's chunks.
        name: the file name given at put (or that of the path stored), if any.
        media_type: the media type given at put, or guessed from the name.
        size: the file's length in bytes.
        digest: SHA-256 of the file's bytes (hex).
        metadata: the JSON object given at put, if any.
        chunk_count: how many chunks hold the file.
        created_at: when it was stored (epoch ms).
    """

    id: str
    user_id: str
    name: str | None
    media_type: str
    size: int
    digest: str
    metadata: dict[str, Any] | None
    chunk_count: int
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dictionary (for JSON)."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "name": self.name,
            "media_type": self.media_type,
            "size": self.size,
            "digest": self.digest,
            "metadata": self.metadata,
            "chunk_count": self.chunk_count,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class FileUsage:
    """What one user's files take.

    Attributes:
        files: how many files they have.
        bytes: the files' total length (what the quota counts).
        stored_bytes: the chunk files on disk, after deduplication and compression.
        quota: their quota in bytes, ``None`` for none.
    """

    files: int
    bytes: int
    stored_bytes: int
    quota: int | None


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What a sweep removed.

    Attributes:
        chunks_removed: chunks no file uses any more, removed with their rows.
        bytes_freed: bytes of chunk files removed (orphans included).
        orphans_removed: chunk files no row named (from a put that was killed).
        temp_removed: half-written chunk files left in ``tmp/``.
        deferred: a put was running, so nothing was removed; the next sweep will.
    """

    chunks_removed: int = 0
    bytes_freed: int = 0
    orphans_removed: int = 0
    temp_removed: int = 0
    deferred: bool = False


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What :meth:`FileService.check` found and repaired.

    Attributes:
        files_checked: files whose chunk lists were checked.
        chunks_checked: chunk files looked at (opened and authenticated when verified).
        missing: names of chunks files use that are not on disk.
        corrupt: names of chunks that failed authentication (altered, truncated,
            swapped or moved from another user).
        damaged_files: ids of files that cannot be read whole (they use a missing or
            corrupt chunk, or their chunk list does not add up): restore them from a
            backup, or delete them.
        sweep: what the sweep removed (orphaned chunks, leftovers of killed puts).
        not_fetched: chunks of synced files that were never on this device; they are
            fetched from the relay when their file is opened.
    """

    files_checked: int
    chunks_checked: int
    missing: tuple[str, ...] = ()
    corrupt: tuple[str, ...] = ()
    damaged_files: tuple[str, ...] = ()
    sweep: SweepReport = field(default_factory=SweepReport)
    not_fetched: int = 0

    @property
    def ok(self) -> bool:
        """Whether every file can be read whole."""
        return not (self.missing or self.corrupt or self.damaged_files)
