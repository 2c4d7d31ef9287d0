"""The disk tier: a ``diskcache`` directory whose keys and values are unreadable.

It lives in ``<database>.cache/`` (or ``Settings.cache_disk_dir``), made mode 0700
on first use, and only for a file database with a keyring: its key is the
keyring's ``cache`` sub-key, from which HKDF derives two keys, one per use:

- keys are stored as HMAC-SHA256(key-hashing key, key), so the names of cached
  things do not show;
- values are AES-256-GCM ciphertexts (random 96-bit nonce) of a pickle of
  ``(key, tags, expiry, value)``, with the hashed key as associated data, so a
  ciphertext moved to another key fails. Nothing is unpickled before it has been
  authenticated, so only data this keyring wrote is ever unpickled.

Tags are invalidated by generation: each tag has a counter (stored under its HMAC)
that :meth:`DiskCache.invalidate_tags` increments; an entry remembers its tags'
counters and is dropped when one has moved. This is atomic across processes that
share the directory and costs nothing per entry. :meth:`DiskCache.invalidate_pattern`
must decrypt every key, so its cost grows with the tier.

The bound is diskcache's ``size_limit``, culled after each store (least recently
used first); entries expire both by diskcache's own clock and by the injectable
clock the tier checks on every read.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import hmac
import os
import pickle
import secrets
import threading
from pathlib import Path
from typing import Any, Final

import diskcache
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mangostore.cache.memory import MISSING, TierStats
from mangostore.clock import Clock, SystemClock
from mangostore.errors import ConfigurationError, InvalidValueError

_VERSION: Final = b"\x01"
_NONCE_BYTES: Final = 12
_AAD_PREFIX: Final = b"mangostore/cache/v1/"


def disk_cache_dir(database_path: str) -> Path:
    """Return where the disk tier of the database at ``database_path`` lives by default."""
    return Path(database_path + ".cache")


def _derive(key: bytes, use: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"mangostore/v1/cache/" + use
    ).derive(key)


class DiskCache:
    """The encrypted disk tier (see the module docstring).

    Args:
        directory: where the cache lives; made on first use, mode 0700.
        key: the keyring's ``cache`` sub-key (32 bytes).
        max_bytes: the size bound; 0 disables the tier.
        ttl_ms: default time to live.
        clock: the time source of expiry.
    """

    tier = "disk"

    def __init__(
        self,
        directory: Path,
        key: bytes,
        *,
        max_bytes: int,
        ttl_ms: int,
        clock: Clock | None = None,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.ttl_ms = ttl_ms
        self._clock = clock or SystemClock()
        self._aead = AESGCM(_derive(key, b"values"))
        self._mac_key = _derive(key, b"keys")
        self._values: diskcache.Cache | None = None
        self._tags: diskcache.Cache | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.hits = self.misses = self.evictions = 0
        self.expirations = self.invalidations = 0

    # -- opening ----------------------------------------------------------------------

    def _open(self) -> tuple[diskcache.Cache, diskcache.Cache]:
        with self._lock:
            if self._closed:
                raise ConfigurationError("the disk cache is closed with its database")
            if self._values is None or self._tags is None:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(self.directory, 0o700)
                self._values = diskcache.Cache(
                    str(self.directory / "values"),
                    size_limit=self.max_bytes,
                    eviction_policy="least-recently-used",
                    cull_limit=0,  # culled by store(), which counts what it drops
                )
                self._tags = diskcache.Cache(str(self.directory / "tags"))
            return self._values, self._tags

    def _open_existing(self) -> tuple[diskcache.Cache, diskcache.Cache] | None:
        """Open the tier if it was ever used (its directory exists); else ``None``."""
        with self._lock:
            opened = self._values is not None
        if opened or self.directory.is_dir():
            return self._open()
        return None

    # -- keys and envelopes --------------------------------------------------------------

    def _hash(self, kind: bytes, text: str) -> bytes:
        return kind + hmac.new(self._mac_key, text.encode("utf-8"), hashlib.sha256).digest()

    def _seal(self, hashed: bytes, payload: Any) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        plain = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        return _VERSION + nonce + self._aead.encrypt(nonce, plain, _AAD_PREFIX + hashed)

    def _open_envelope(self, hashed: bytes, blob: Any) -> Any:
        if not isinstance(blob, bytes) or blob[:1] != _VERSION:
            return MISSING
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, sealed, _AAD_PREFIX + hashed)
        except InvalidTag:
            return MISSING  # not ours, or damaged: treated as absent
        return pickle.loads(plain)  # noqa: S301 (authenticated above)

    # -- reading and writing --------------------------------------------------------------

    def get(self, key: str, default: Any = MISSING) -> Any:
        """Return the value stored under ``key``, or ``default`` when there is none.

        Raises:
            InvalidValueError: ``key`` is not a string.
        """
        hashed = self._hash(b"v", _check_key(key))
        opened = self._open_existing()
        if opened is None:
            self._count("misses")
            return default
        values, tags = opened
        payload = self._open_envelope(hashed, values.get(hashed, default=None))
        if payload is MISSING:
            self._count("misses")
            return default
        _key, tag_versions, expires_ms, value = payload
        if self._clock.now_ms() >= expires_ms:
            values.delete(hashed)
            self._count("expirations", "misses")
            return default
        for tag_hash, version in tag_versions:
            if tags.get(tag_hash, default=0) != version:
                values.delete(hashed)
                self._count("misses")
                return default
        self._count("hits")
        return value

    def set(
        self,
        key: str,
        value: Any,
        *,
        ttl_ms: int | None = None,
        tags: Any = (),
    ) -> bool:
        """Encrypt and store ``value`` under ``key``; return whether it was stored.

        Raises:
            InvalidValueError: ``key`` is not a string, or ``value`` cannot be pickled.
        """
        hashed = self._hash(b"v", _check_key(key))
        ttl = self.ttl_ms if ttl_ms is None else ttl_ms
        if ttl <= 0 or self.max_bytes == 0:
            return False
        values, tag_store = self._open()
        tag_versions = tuple(
            (tag_hash, int(tag_store.get(tag_hash, default=0)))
            for tag_hash in sorted({self._hash(b"t", str(t)) for t in tags})
        )
        expires = self._clock.now_ms() + ttl
        try:
            blob = self._seal(hashed, (key, tag_versions, expires, value))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise InvalidValueError(f"the disk cache cannot store this value: {exc}") from exc
        values.set(hashed, blob, expire=ttl / 1000)
        if values.volume() > self.max_bytes:
            dropped = values.cull()
            self._count_many("evictions", dropped)
        return True

    def delete(self, key: str) -> bool:
        """Remove the entry under ``key``; return whether there was one."""
        hashed = self._hash(b"v", _check_key(key))
        opened = self._open_existing()
        return opened is not None and bool(opened[0].delete(hashed))

    # -- invalidation ---------------------------------------------------------------------

    def invalidate_tags(self, tags: Any) -> int:
        """Invalidate every entry carrying any of ``tags``; return how many tags moved."""
        opened = self._open_existing()
        if opened is None:
            return 0  # never used: nothing to invalidate
        _, tag_store = opened
        moved = 0
        for tag in {str(t) for t in tags}:
            tag_store.incr(self._hash(b"t", tag), default=0)
            moved += 1
        self._count_many("invalidations", moved)
        return moved

    def invalidate_pattern(self, pattern: str) -> int:
        """Drop every entry whose key matches the glob ``pattern``; return how many."""
        opened = self._open_existing()
        if opened is None:
            return 0
        values, _ = opened
        dropped = 0
        for hashed in list(values.iterkeys()):
            payload = self._open_envelope(hashed, values.get(hashed, default=None))
            if payload is not MISSING and fnmatch.fnmatchcase(payload[0], pattern):
                values.delete(hashed)
                dropped += 1
        self._count_many("invalidations", dropped)
        return dropped

    def clear(self) -> int:
        """Drop every entry and tag counter; return how many entries there were."""
        opened = self._open_existing()
        if opened is None:
            return 0
        values, tag_store = opened
        dropped = int(values.clear())
        tag_store.clear()
        self._count_many("invalidations", dropped)
        return dropped

    def stats(self) -> TierStats:
        """Return the tier's counters (entries and bytes as diskcache counts them)."""
        entries = size = 0
        opened = None if self._closed else self._open_existing()
        if opened is not None:
            entries, size = len(opened[0]), int(opened[0].volume())
        with self._lock:
            return TierStats(
                tier="disk",
                hits=self.hits,
                misses=self.misses,
                evictions=self.evictions,
                expirations=self.expirations,
                invalidations=self.invalidations,
                bypassed=0,
                entries=entries,
                bytes=size,
                max_bytes=self.max_bytes,
            )

    def close(self) -> None:
        """Close the cache's files (it can be reopened by opening the database again)."""
        with self._lock:
            self._closed = True
            for cache in (self._values, self._tags):
                if cache is not None:
                    with contextlib.suppress(Exception):
                        cache.close()
            self._values = self._tags = None

    def _count(self, *names: str) -> None:
        with self._lock:
            for name in names:
                setattr(self, name, getattr(self, name) + 1)

    def _count_many(self, name: str, amount: int) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)


def _check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise InvalidValueError(f"disk cache keys are strings, not {type(key).__name__}")
    return key
