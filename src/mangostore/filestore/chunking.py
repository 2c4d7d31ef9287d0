"""Content-defined chunking of a stream: FastCDC boundaries, bounded memory.

Chunk boundaries depend only on the bytes near them (a gear hash that restarts at
every chunk), so inserting or editing a few bytes in a file changes the one or two
chunks around the edit and leaves the rest of the file's chunks as they were: an
edited file shares most of its chunks with its previous version.

The boundaries come from the ``fastcdc`` package (a compiled FastCDC, above 1 GB/s
here). It chunks a buffer it is given whole; :func:`iter_chunks` feeds it a window of
the stream at a time and keeps only the chunks whose end the window has really
seen, so a stream of any size is chunked in ``2 * MAX_CHUNK`` bytes of memory with
exactly the boundaries a whole-buffer run would give: every boundary is found from
the chunk's own start, which is where the next window begins.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Final

try:  # the compiled FastCDC; the package falls back to pure Python (slow) without it
    from fastcdc.fastcdc_cy import fastcdc_cy as _fastcdc  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - only on platforms without a wheel
    from fastcdc.fastcdc_py import fastcdc_py as _fastcdc  # type: ignore[import-untyped]

__all__ = ["AVG_CHUNK", "MAX_CHUNK", "MIN_CHUNK", "chunk_boundaries", "iter_chunks"]

#: Chunk sizes in bytes. About 1 MiB on average, as restic does: one file on disk per
#: chunk stays cheap for large files, and a 1 KB edit rewrites about 1 MiB.
MIN_CHUNK: Final = 256 * 1024
AVG_CHUNK: Final = 1024 * 1024
MAX_CHUNK: Final = 4 * 1024 * 1024
#: Bytes read from the source at a time: at least one maximal chunk beyond the
#: carried-over tail, so every window yields a chunk.
_WINDOW: Final = 2 * MAX_CHUNK


def chunk_boundaries(data: bytes | bytearray | memoryview) -> list[int]:
    """Return the length of every chunk of ``data`` (the whole buffer at once)."""
    if not len(data):
        return []
    return [
        int(c.length) for c in _fastcdc(memoryview(data), MIN_CHUNK, AVG_CHUNK, MAX_CHUNK, False)
    ]


def _read_into(source: BinaryIO, buf: bytearray, want: int) -> bool:
    """Append up to ``want`` bytes of ``source`` to ``buf``; ``False`` once at its end."""
    while want > 0:
        block = source.read(want)
        if not block:
            return False
        buf += block
        want -= len(block)
    return True


def iter_chunks(source: BinaryIO) -> Iterator[bytes]:
    """Yield the content-defined chunks of ``source``, read to its end.

    Memory stays within two maximal chunks whatever the source's size. An empty
    source yields nothing.
    """
    buf = bytearray()
    more = True
    while more or buf:
        if more:
            more = _read_into(source, buf, _WINDOW - len(buf))
        if not buf:
            return
        lengths = chunk_boundaries(buf)
        # Without the end of the stream in view, the last chunk may have been cut by
        # the window: keep it for the next round, where it starts the window.
        keep = lengths if not more else lengths[:-1]
        start = 0
        for length in keep:
            yield bytes(buf[start : start + length])
            start += length
        del buf[:start]
