"""The index stream of a backup: what the next incremental backup compares with.

For every table, a header record ``I`` (``{"t": name}``, plus ``"blocks": shift`` for a
table read in blocks of rowids) and entry records ``i``: the JSON list of keys, a
newline, then one 16-byte keyed BLAKE2b digest per key, in the same order. A key is a
row's primary key (tables ``WITHOUT ROWID``) or, for a table read in blocks, the pair
``[block number, rows in the block]``. The digests are keyed (a key derived from the
vault's ``backup`` sub-key), so that even with the stream decrypted they say nothing of
the rows.

Version 1 of the format indexed every table row by row; an incremental backup is never
built on a version-1 backup (the next one is a full backup instead).
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from mangostore.backup.destinations import Destination
from mangostore.backup.manifest import Manifest, data_key
from mangostore.backup.snapshot import Block, Key
from mangostore.backup.stream import StreamReader, StreamWriter, frame, read_records
from mangostore.errors import BackupCorruptError

__all__ = [
    "DIGEST_BYTES",
    "IndexWriter",
    "OldTable",
    "ParentIndex",
    "block_digests",
    "digester",
    "row_digests",
]

DIGEST_BYTES: Final = 16
#: Entries per index record.
_ENTRIES: Final = 8192
_DIGEST = operator.methodcaller("digest")

#: Makes a keyed BLAKE2b hash object (see :func:`digester`).
Hasher = Callable[..., Any]


def digester(key: bytes) -> Hasher:
    """A maker of keyed BLAKE2b hash objects of :data:`DIGEST_BYTES` bytes under ``key``."""
    return functools.partial(hashlib.blake2b, digest_size=DIGEST_BYTES, key=key)


def row_digests(hasher: Hasher, literals: Iterable[bytes]) -> bytes:
    """The digests of rows, concatenated (the hashing loop runs in C)."""
    return b"".join(map(_DIGEST, map(hasher, literals)))


def block_digests(hasher: Hasher, blocks: Sequence[Block]) -> list[bytes]:
    """The digest of each block's text, its literals joined by ``,`` (in C, as above)."""
    texts = map(b",".join, [b.parts for b in blocks])
    return list(map(_DIGEST, map(hasher, texts)))


class IndexWriter:
    """Writes the index stream, one table after another."""

    def __init__(self, out: StreamWriter) -> None:
        self._out = out
        self._keys: list[object] = []
        self._digests: list[bytes] = []

    def start(self, table: str, shift: int | None) -> None:
        """Begin the entries of ``table`` (read in blocks of ``shift`` when not ``None``)."""
        self.flush()
        head: dict[str, object] = {"t": table}
        if shift is not None:
            head["blocks"] = shift
        self._out.write(frame(b"I", json.dumps(head).encode()))

    def add_rows(self, keys: Sequence[Key], digests: bytes) -> None:
        """Add rows: their keys and their digests, concatenated."""
        self._keys.extend(keys)
        self._digests.append(digests)
        if len(self._keys) >= _ENTRIES:
            self.flush()

    def add_blocks(self, blocks: Sequence[Block], digests: Sequence[bytes]) -> None:
        """Add blocks and their digests."""
        self._keys.extend([b.number, b.rows] for b in blocks)
        self._digests.extend(digests)
        if len(self._keys) >= _ENTRIES:
            self.flush()

    def flush(self) -> None:
        """Write the entries held (called at each table's start and at the end)."""
        if self._keys:
            payload = json.dumps(self._keys).encode() + b"\n" + b"".join(self._digests)
            self._out.write(frame(b"i", payload))
            self._keys, self._digests = [], []


@dataclass
class OldTable:
    """The parent's entries of one table.

    Attributes:
        shift: the parent's block shift for this table (``None``: row by row).
        digests: each key's digest (a block number's, for a table read in blocks).
        rows: each block's row count (tables read in blocks only).
    """

    shift: int | None
    digests: dict[Key, bytes] = field(default_factory=dict)
    rows: dict[int, int] = field(default_factory=dict)


class ParentIndex:
    """The parent's index, read table by table in the order both snapshots list them."""

    def __init__(self, destination: Destination, parent: Manifest, backup_key: bytes) -> None:
        reader = StreamReader(
            destination,
            parent.id,
            "index",
            data_key(backup_key, parent.id),
            parent.objects_of("index"),
        )
        name = f"the index of backup {parent.id}"
        self._records = read_records(reader.read(), name)
        self._next: tuple[bytes, bytes] | None = next(self._records, None)
        self._name = name

    def table(self, table: str) -> OldTable:
        """The entries of ``table`` (the next table of the index).

        Raises:
            BackupCorruptError: the index does not list ``table`` next, or is damaged.
        """
        head = self._next
        try:
            doc = json.loads(head[1]) if head is not None and head[0] == b"I" else {}
            if doc.get("t") != table:
                raise ValueError(table)
            shift = doc.get("blocks")
            old = OldTable(None if shift is None else int(shift))
            for kind, payload in self._records:
                if kind != b"i":
                    self._next = (kind, payload)
                    return old
                self._add(old, payload)
        except (ValueError, TypeError, KeyError) as exc:
            raise BackupCorruptError(
                f"{self._name} does not list table {table} where it should; make a full backup",
                None,
            ) from exc
        self._next = None
        return old

    @staticmethod
    def _add(old: OldTable, payload: bytes) -> None:
        keys_json, _, digests = payload.partition(b"\n")
        keys = json.loads(keys_json)
        if len(digests) != DIGEST_BYTES * len(keys):
            raise ValueError("digests do not match keys")
        chunks = [digests[i : i + DIGEST_BYTES] for i in range(0, len(digests), DIGEST_BYTES)]
        if old.shift is None:
            old.digests.update(zip(keys, chunks, strict=True))
            return
        numbers = [int(k[0]) for k in keys]
        old.digests.update(zip(numbers, chunks, strict=True))
        old.rows.update(zip(numbers, (int(k[1]) for k in keys), strict=True))
