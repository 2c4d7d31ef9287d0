"""The key block of a backup: the per-user data keys, kept apart from the bulk data.

Per-user data keys live in the keyring sidecar, not in the database file, so a backup
of the file alone could not decrypt its sensitive fields after the keyring moved on
(a key rotated and pruned). Each backup therefore carries a small *key block*: every
per-user data key entry of the keyring at the time (still wrapped under the vault's
field key) and the users erased so far, sealed under the backup's data key.

It is a separate object so that erasure can reach old backups: erasing a user
rewrites the key block of every kept backup without that user's keys (and re-signs the
manifest), and the bulk data, which holds their fields only as ciphertext under those
keys, stays as it was. Restoring any backup then yields the user's fields unreadable,
and opening the restored database re-applies the erasure to their rows.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from mangostore.backup.destinations import Destination, get_bytes, put_bytes
from mangostore.backup.manifest import Manifest, data_key, manifest_name
from mangostore.backup.stream import ObjectInfo, open_sealed, seal_one
from mangostore.errors import BackupCorruptError
from mangostore.keys.keyring import DataKeyEntry

__all__ = ["KeyBlock", "read_keyblock", "scrub_keyblocks", "write_keyblock"]

_STREAM = "keys"


@dataclass(frozen=True)
class KeyBlock:
    """The per-user data keys (wrapped) and the erased users a backup knows of."""

    entries: tuple[DataKeyEntry, ...]
    erased_users: tuple[str, ...]

    def without(self, erased: set[str]) -> KeyBlock:
        """This block with ``erased`` users' keys gone and the users listed as erased."""
        return KeyBlock(
            tuple(e for e in self.entries if e.user_id not in erased),
            tuple(sorted(set(self.erased_users) | erased)),
        )

    def encode(self) -> bytes:
        """JSON bytes."""
        return json.dumps(
            {
                "data_keys": [
                    [e.key_id, e.user_id, base64.b64encode(e.wrapped).decode("ascii")]
                    for e in self.entries
                ],
                "erased_users": list(self.erased_users),
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, data: bytes, name: str) -> KeyBlock:
        """The inverse of :meth:`encode`.

        Raises:
            BackupCorruptError: ``data`` is not a key block.
        """
        try:
            doc = json.loads(data)
            entries = tuple(
                DataKeyEntry(str(k), str(u), base64.b64decode(w)) for k, u, w in doc["data_keys"]
            )
            erased = tuple(str(u) for u in doc["erased_users"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupCorruptError(f"backup object {name} is not a key block", name) from exc
        return cls(entries, erased)


def write_keyblock(
    destination: Destination, backup_id: str, version: int, key: bytes, block: KeyBlock
) -> ObjectInfo:
    """Seal and store ``block`` as version ``version`` of the backup's key block."""
    name = f"objects/{backup_id}/keys.{version:05d}"
    sealed = seal_one(key, backup_id, f"{_STREAM}.{version}", block.encode())
    put_bytes(destination, name, sealed)
    return ObjectInfo(name, _STREAM, hashlib.sha256(sealed).hexdigest(), len(sealed))


def read_keyblock(destination: Destination, manifest: Manifest, key: bytes) -> KeyBlock:
    """Read and open the key block ``manifest`` lists.

    Raises:
        BackupCorruptError: it is missing, changed, or not this backup's.
    """
    found = manifest.objects_of(_STREAM)
    if len(found) != 1:
        raise BackupCorruptError(
            f"backup {manifest.id} lists {len(found)} key blocks instead of one",
            f"manifests/{manifest.id}.json",
        )
    obj = found[0]
    sealed = get_bytes(destination, obj.name)
    if hashlib.sha256(sealed).hexdigest() != obj.sha256:
        raise BackupCorruptError(
            f"backup object {obj.name} does not match the SHA-256 in the manifest", obj.name
        )
    plain = open_sealed(key, manifest.id, f"{_STREAM}.{manifest.keys_version}", sealed, obj.name)
    return KeyBlock.decode(plain, obj.name)


def scrub_keyblocks(
    destination: Destination,
    backups: list[Manifest],
    backup_key: bytes,
    erased: set[str],
    sign: Callable[[Manifest], bytes],
    clean: dict[str, frozenset[str]] | None = None,
) -> list[str]:
    """Rewrite the key block of every backup that still holds a key of an ``erased``
    user (or does not yet list them as erased); return the ids of the backups rewritten.

    Each rewrite writes the new key block, then the re-signed manifest that lists it,
    then removes the old block: an interruption leaves either version whole.

    ``clean`` remembers, by a key block's SHA-256 (from its signed manifest), the
    users it lists as erased and holds no key of; a block already known to be clean
    is not read again (once anyone was erased, every backup and prune calls this).
    """
    rewritten = []
    for manifest in backups:
        blocks = manifest.objects_of(_STREAM)
        known = clean.get(blocks[-1].sha256) if clean is not None and blocks else None
        if known is not None and erased <= known:
            continue
        key = data_key(backup_key, manifest.id)
        block = read_keyblock(destination, manifest, key)
        listed = set(block.erased_users)
        if erased <= listed and not any(e.user_id in erased for e in block.entries):
            if clean is not None and blocks:
                clean[blocks[-1].sha256] = frozenset(listed)
            continue
        version = manifest.keys_version + 1
        new_obj = write_keyblock(destination, manifest.id, version, key, block.without(erased))
        old = manifest.objects_of(_STREAM)
        objects = [o for o in manifest.objects if o.role != _STREAM] + [new_obj]
        updated = manifest.with_objects(objects, keys_version=version)
        put_bytes(destination, manifest_name(manifest.id), sign(updated))
        if clean is not None:
            clean[new_obj.sha256] = frozenset(listed | erased)
        for obj in old:
            destination.delete(obj.name)
        rewritten.append(manifest.id)
    return rewritten
