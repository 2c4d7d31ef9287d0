"""The backups a destination holds: their manifests, checked, and the chains they form."""

from __future__ import annotations

from dataclasses import dataclass, field

from mangostore.backup.destinations import Destination, get_bytes
from mangostore.backup.manifest import Manifest, manifest_name, parse_manifest
from mangostore.errors import BackupCorruptError, BackupError

__all__ = ["Catalog", "ManifestCache", "load_catalog"]


@dataclass
class Catalog:
    """The manifests of one destination that belong to this vault and check out.

    Attributes:
        backups: the good manifests, oldest first.
        problems: manifests that failed their checks, as ``(object name, error)``.
    """

    backups: list[Manifest] = field(default_factory=list)
    problems: list[tuple[str, BackupCorruptError]] = field(default_factory=list)

    def get(self, backup_id: str) -> Manifest:
        """The backup ``backup_id``.

        Raises:
            BackupCorruptError: its manifest is there but failed its checks.
            BackupError: there is no such backup.
        """
        for manifest in self.backups:
            if manifest.id == backup_id:
                return manifest
        for name, exc in self.problems:
            if name == manifest_name(backup_id):
                raise exc
        raise BackupError(f"there is no backup {backup_id} here: list them with 'backup list'")

    def latest(self) -> Manifest | None:
        """The newest backup, or ``None``."""
        return self.backups[-1] if self.backups else None

    def latest_of_log(self, log_id: str) -> Manifest | None:
        """The newest backup cut from the change log ``log_id`` (of one database: two
        devices of a vault sharing a destination each build on their own), or ``None``."""
        own = [m for m in self.backups if m.log_id == log_id]
        return own[-1] if own else None

    def chain(self, target: Manifest) -> list[Manifest]:
        """The backups a restore of ``target`` reads: its full base, then each
        incremental up to ``target``.

        Raises:
            BackupCorruptError: a backup of the chain is missing or failed its checks.
        """
        chain = [target]
        while chain[-1].parent is not None:
            parent_id = chain[-1].parent
            try:
                parent = self.get(parent_id)
            except BackupCorruptError:
                raise
            except BackupError as exc:
                name = manifest_name(parent_id)
                raise BackupCorruptError(
                    f"backup object {name} is missing: backup {target.id} needs it (its "
                    "chain is broken); restore another backup",
                    name,
                ) from exc
            chain.append(parent)
            if len(chain) > 10_000:
                raise BackupCorruptError("the backup chain loops", manifest_name(target.id))
        chain.reverse()
        if chain[0].kind != "full":
            raise BackupCorruptError(
                f"backup {target.id}'s chain does not start with a full backup",
                manifest_name(chain[0].id),
            )
        return chain

    def at(self, moment_ms: int) -> Manifest:
        """The newest backup made at or before ``moment_ms``.

        Raises:
            BackupError: every backup is newer.
        """
        found = [m for m in self.backups if m.created_at <= moment_ms]
        if not found:
            raise BackupError(
                "no backup here was made at or before that time: the oldest is "
                + (str(self.backups[0].created_at) if self.backups else "missing")
                + " (epoch ms); list them with 'backup list'"
            )
        return found[-1]

    def children(self, backup_id: str) -> list[Manifest]:
        """The incrementals made on top of ``backup_id``."""
        return [m for m in self.backups if m.parent == backup_id]


class ManifestCache:
    """Manifests parsed and checked before, by name and stamp
    (:meth:`~mangostore.backup.destinations.Destination.stamps`).

    A schedule looks at the catalog every minute; with restore points a minute apart
    it holds thousands of manifests, and reading each again (one request each, on S3)
    would cost more than the backups. A manifest is read again only when its stamp
    changed (it was re-signed: an index dropped, a key block rewritten) or the
    destination gives no stamp. One cache serves one vault's key.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, Manifest]] = {}

    def get(self, name: str, stamp: str) -> Manifest | None:
        """The manifest read under ``name`` when it had ``stamp``, if any."""
        found = self._seen.get(name)
        return found[1] if found is not None and stamp and found[0] == stamp else None

    def keep(self, name: str, stamp: str, manifest: Manifest) -> None:
        """Remember ``manifest``, read under ``name`` with ``stamp``."""
        if stamp:
            self._seen[name] = (stamp, manifest)

    def forget_missing(self, names: set[str]) -> None:
        """Drop the manifests no longer listed."""
        for name in set(self._seen) - names:
            self._seen.pop(name, None)


def load_catalog(
    destination: Destination,
    backup_key: bytes,
    vault_id: str,
    cache: ManifestCache | None = None,
) -> Catalog:
    """Read and check every manifest of ``destination`` (those ``cache`` holds with an
    unchanged stamp are not read again).

    A manifest of another vault, or one that fails its signature, is a problem
    reported in the catalog, not an error: the others are still usable.
    """
    catalog = Catalog()
    stamps = {
        name: stamp
        for name, stamp in destination.stamps("manifests/").items()
        if name.endswith(".json")
    }
    if cache is not None:
        cache.forget_missing(set(stamps))
    for name in sorted(stamps):
        manifest = cache.get(name, stamps[name]) if cache is not None else None
        if manifest is None:
            try:
                manifest = parse_manifest(get_bytes(destination, name), name, backup_key, vault_id)
            except BackupCorruptError as exc:
                catalog.problems.append((name, exc))
                continue
            if cache is not None:
                cache.keep(name, stamps[name], manifest)
        catalog.backups.append(manifest)
    catalog.backups.sort(key=lambda m: (m.created_at, m.id))
    return catalog
