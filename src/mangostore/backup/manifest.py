"""The manifest of a backup: what it is, what it holds, signed under the backup key.

A manifest is a JSON object at ``manifests/<backup id>.json``, written after every
object it lists, so a backup exists exactly when its manifest does. Its ``mac`` is
HMAC-SHA256, under a key derived from the vault's ``backup`` sub-key, of the canonical
JSON of every other field: a manifest edited, moved to another name, or made by
another vault fails :func:`verify_manifest`.

Keys: every key of a backup comes from the ``backup`` sub-key with HKDF-SHA256, one
``info`` each (``manifest``, ``data/<backup id>``), so no two purposes share a key and
each backup's chunks are sealed under a key of their own.
"""

from __future__ import annotations

import hmac
import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mangostore.backup.stream import ObjectInfo
from mangostore.errors import BackupCorruptError

__all__ = [
    "FORMAT",
    "READABLE",
    "VERSION",
    "Manifest",
    "data_key",
    "derive_key",
    "level_of",
    "manifest_key",
    "manifest_name",
    "parse_manifest",
    "sign_manifest",
]

FORMAT: Final = "mangostore-backup"
#: The format this version writes. 4: incrementals form levels (the manifest's ``seq``
#: places a backup in its series, and decides which backup it is built on); 3:
#: incrementals are built from the change log (the manifest names the log and its
#: cut), and the index covers only the tables SQLite writes itself; 2: tables with a
#: rowid are indexed by blocks of rowids, and incrementals remove rowid ranges (``E``
#: records); 1: row by row.
VERSION: Final = 4
#: The formats this version reads (restores and verifies).
READABLE: Final = (1, 2, 3, 4)
Kind = Literal["full", "incremental"]


def level_of(manifest: Manifest, fanout: int) -> float:
    """The level of a backup in its series: a full backup is above every level; an
    incremental at ``seq`` is at the number of times ``fanout`` divides ``seq`` (the
    trailing zero digits of ``seq`` written in base ``fanout``).

    An incremental is built on the newest backup of its series at its level or above,
    so a level-``k`` incremental holds the changes of the ``fanout`` level-``k - 1``
    ones before it: each change is stored once per level, and a restore reads at most
    ``fanout - 1`` backups per level.
    """
    if manifest.kind == "full":
        return math.inf
    level, seq = 0, manifest.seq
    if seq <= 0:  # an incremental from before version 4: nothing is built on it
        return 0
    while seq % fanout == 0:
        level += 1
        seq //= fanout
    return level


def derive_key(backup_key: bytes, info: str) -> bytes:
    """A key for one purpose of the backup service, from the ``backup`` sub-key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info.encode()).derive(
        backup_key
    )


def manifest_key(backup_key: bytes) -> bytes:
    """The key manifests are signed with."""
    return derive_key(backup_key, "manifest")


def data_key(backup_key: bytes, backup_id: str) -> bytes:
    """The key the chunks and key block of backup ``backup_id`` are sealed with."""
    return derive_key(backup_key, f"data/{backup_id}")


def manifest_name(backup_id: str) -> str:
    """Where the manifest of ``backup_id`` is kept."""
    return f"manifests/{backup_id}.json"


@dataclass(frozen=True)
class Manifest:
    """One backup, as its manifest describes it.

    Attributes:
        id: the backup's id (UUIDv7: its order is the order backups were made).
        parent: the backup an incremental applies on top of (``None`` for a full one).
        base: the full backup its chain starts from (its own id for a full one).
        kind: ``"full"`` or ``"incremental"``.
        depth: incrementals between it and its base (0 for a full backup): a restore
            reads ``depth + 1`` backups.
        schema_version: the database's schema version when the snapshot was taken.
        schema_digest: SHA-256 of the snapshot's schema; an incremental has its parent's.
        vault_id: the vault whose keys sealed it.
        created_at: when the snapshot was taken (epoch ms).
        since: the parent's ``created_at`` (the start of the time range an incremental
            covers; ``None`` for a full backup).
        clock_from, clock_to: the sync clock of the parent's snapshot and of this one
            (0 when sync has never ticked).
        plain_bytes: the records' size before compression.
        stored_bytes: the size of every object.
        changed_rows, deleted_rows: what an incremental carries: the rows it writes
            (since version 2, changed blocks of rowids whole) and the rows it removes
            without writing them again (since version 2, counted as the rows each
            block lost). For a full backup, every row, and 0.
        tables: every table's row count at the snapshot (what verify compares).
        objects: every object, in stream order, with its SHA-256 and size.
        keys_version: bumped each time the key block is rewritten (an erasure).
        log_id, log_epoch: the change log the snapshot cut and where (since version 3):
            an incremental built on this backup sends what the log tagged later.
        seq: its place in its series (since version 4): 0 for a full backup, and one
            more than the newest backup of the series for each incremental; its
            level, and so its parent, follow from it (:func:`level_of`).
        format_version: the format the backup was written in (``version`` in the
            file; see :data:`READABLE`).
    """

    id: str
    parent: str | None
    base: str
    kind: Kind
    depth: int
    schema_version: int
    schema_digest: str
    vault_id: str
    created_at: int
    since: int | None
    clock_from: int
    clock_to: int
    plain_bytes: int
    stored_bytes: int
    changed_rows: int
    deleted_rows: int
    tables: dict[str, int] = field(default_factory=dict)
    objects: tuple[ObjectInfo, ...] = ()
    keys_version: int = 1
    log_id: str | None = None
    log_epoch: int | None = None
    seq: int = 0
    format_version: int = VERSION

    def objects_of(self, role: str) -> list[ObjectInfo]:
        """The objects of one stream (``data``, ``index``, ``keys``), in order."""
        return [o for o in self.objects if o.role == role]

    def with_objects(self, objects: list[ObjectInfo], keys_version: int | None = None) -> Manifest:
        """A copy listing ``objects`` instead (and another key block version)."""
        return replace(
            self,
            objects=tuple(objects),
            stored_bytes=sum(o.size for o in objects),
            keys_version=self.keys_version if keys_version is None else keys_version,
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest's fields, JSON-ready (without the signature)."""
        doc = asdict(self)
        doc["objects"] = [asdict(o) for o in self.objects]
        # A manifest re-signed later (an index dropped, an erasure) keeps its version.
        version = doc.pop("format_version")
        if version < 4:  # written as that version was: its readers know no ``seq``
            doc.pop("seq")
        return {"format": FORMAT, "version": version, **doc}


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def sign_manifest(manifest: Manifest, backup_key: bytes) -> bytes:
    """The manifest's file: its fields and their HMAC."""
    doc = manifest.to_json()
    doc["mac"] = hmac.digest(manifest_key(backup_key), _canonical(doc), "sha256").hex()
    return json.dumps(doc, sort_keys=True, indent=1).encode()


def parse_manifest(data: bytes, name: str, backup_key: bytes, vault_id: str) -> Manifest:
    """Read and check a manifest file.

    Raises:
        BackupCorruptError: it is not a manifest, belongs to another vault, was edited,
            or is kept under another backup's name.
    """
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError("not a manifest")
        mac = bytes.fromhex(str(doc.pop("mac")))
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise BackupCorruptError(
            f"backup object {name} is not a mangostore backup manifest (damaged?)", name
        ) from exc
    if doc.get("vault_id") != vault_id:
        raise BackupCorruptError(
            f"backup object {name} belongs to another vault ({doc.get('vault_id')}), not "
            f"to this database's ({vault_id}): restore it with that vault's database",
            name,
        )
    expected = hmac.digest(manifest_key(backup_key), _canonical(doc), "sha256")
    if not hmac.compare_digest(expected, mac):
        raise BackupCorruptError(
            f"backup object {name} fails its signature: it was edited after the backup "
            "was made; do not restore it",
            name,
        )
    version = doc.get("version")
    if version not in READABLE:
        raise BackupCorruptError(
            f"backup object {name} has format version {version}; this mangostore reads "
            f"versions {', '.join(map(str, READABLE))}: upgrade mangostore",
            name,
        )
    try:
        objects = tuple(ObjectInfo(**o) for o in doc.pop("objects"))
        doc.pop("format")
        doc.pop("version")
        manifest = Manifest(objects=objects, format_version=int(version), **doc)
    except (TypeError, KeyError) as exc:
        raise BackupCorruptError(f"backup object {name} is malformed", name) from exc
    if manifest_name(manifest.id) != name:
        raise BackupCorruptError(
            f"backup object {name} is the manifest of backup {manifest.id}, kept under "
            "another name (swapped?)",
            name,
        )
    return manifest
