"""Stored files' chunks in a relay folder: the blob half of
:class:`~mangostore.sync.folder.FolderRelay` (see
:class:`mangostore.filestore.remote.BlobRelay`).

Layout, beside the vault's batches::

    DIR/<vault id>/
      blobs/<first 2 of name>/<name>          a sealed chunk, named by its keyed hash
      blob-owners/<owner tag>/<name>          an empty mark: the chunk's owner

Each chunk is written whole to a temporary file in its folder, flushed and renamed
into place, so a reader never sees half of one; two devices sending one chunk at once
both leave a whole, valid copy. The owner marks let an erasure drop all of one
owner's chunks; names and tags are keyed hashes, so the folder says nothing of the
content or the person. Any failure of the folder raises
:class:`~mangostore.errors.SyncTransportError`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from mangostore.errors import SyncTransportError
from mangostore.files import os_errors, private_file

__all__ = ["FolderBlobs"]

_NAME: Final = re.compile(r"[0-9a-f]{64}")
_TAG: Final = re.compile(r"[0-9a-f]{32}")
_VAULT: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,127}")


class FolderBlobs:
    """The blob methods of :class:`~mangostore.sync.folder.FolderRelay`."""

    @property
    def path(self) -> Path:
        """The relay folder (the relay's own)."""
        raise NotImplementedError  # FolderRelay's

    def check(self) -> None:
        """Make the folder ready for writing (the relay's own)."""
        raise NotImplementedError  # FolderRelay's

    def missing_blobs(self, vault_id: str, names: Sequence[str]) -> list[str]:
        """Those of ``names`` the folder does not hold for ``vault_id`` (the first
        call of a round that sends chunks: the folder is made ready for writing)."""
        self.check()
        return [name for name in names if not self._blob(vault_id, name).is_file()]

    def put_blob(self, vault_id: str, name: str, owner_tag: str, data: bytes) -> None:
        """Keep chunk ``name`` (one already held stays as it is)."""
        target = self._blob(vault_id, name)
        mark = self._owner(vault_id, owner_tag) / name
        with os_errors("writing a file chunk to the relay folder", target, SyncTransportError):
            mark.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            mark.touch(mode=0o600)  # first: a chunk on disk always has its owner's mark
            if target.is_file():
                return
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with private_file(
            target, doing="writing a file chunk to the relay folder", other=SyncTransportError
        ) as out:
            out.write(data)

    def get_blob(self, vault_id: str, name: str) -> bytes | None:
        """Chunk ``name``'s bytes, or ``None`` when the folder does not hold it."""
        target = self._blob(vault_id, name)
        try:
            with os_errors(
                "reading a file chunk from the relay folder", target, SyncTransportError
            ):
                return target.read_bytes()
        except FileNotFoundError:
            return None

    def forget_blobs(self, vault_id: str, owner_tag: str) -> int:
        """Drop every chunk of ``owner_tag``; return how many went."""
        folder = self._owner(vault_id, owner_tag)
        gone = 0
        with os_errors("dropping file chunks from the relay folder", folder, SyncTransportError):
            if not folder.is_dir():
                return 0
            for mark in folder.iterdir():
                if _NAME.fullmatch(mark.name):
                    with contextlib.suppress(FileNotFoundError):
                        self._blob(vault_id, mark.name).unlink()
                        gone += 1
                mark.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # a chunk of the owner sent meanwhile
                folder.rmdir()
        return gone

    def _vault(self, vault_id: str) -> Path:
        if not _VAULT.fullmatch(vault_id):
            raise SyncTransportError(f"{vault_id!r} is not a vault id")
        if not self.path.is_dir():
            raise SyncTransportError(
                f"the relay folder {self.path} is missing; mount it or make it, then sync again"
            )
        return self.path / vault_id

    def _blob(self, vault_id: str, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise SyncTransportError(f"{name!r} is not the name of a file chunk")
        return self._vault(vault_id) / "blobs" / name[:2] / name

    def _owner(self, vault_id: str, owner_tag: str) -> Path:
        if not _TAG.fullmatch(owner_tag):
            raise SyncTransportError(f"{owner_tag!r} is not an owner tag")
        return self._vault(vault_id) / "blob-owners" / owner_tag
