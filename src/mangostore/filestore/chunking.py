"""Content-defined chunking of a stream: FastCDC boundaries, bounded memory.

Chunk boundaries depend only on the bytes near them (a gear hash that restarts at
every chunk), so inserting or editing a few bytes in a file changes the one or two
chunks around the edit and leaves the rest of the file's chunks as they were: an
edited file shares most of its chunks with its previous version.

The boundaries come from the ``fastcdc`` package (a compiled FastCDC, 0.5 to 1 GB/s
on one core of the benchmark machine). It chunks a buffer it is given whole;
:func:`iter_chunks` feeds it a window of the stream at a time and keeps only the
chunks whose end the window has really seen, so a stream of any size is chunked in
windows of ``1.5 * MAX_CHUNK`` new bytes (after the carried-over start of a chunk)
with exactly the boundaries a whole-buffer run would give: every boundary is found
from the chunk's own start, which is where the next window begins.

The chunks are yielded as read-only views into the window, not copies: the source is
read straight into a fresh window each time, and only the unfinished chunk at its end
is copied into the next one.
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
#: New bytes read from the source into each window, beyond the carried-over tail: at
#: least one maximal chunk, so every window but the last yields a chunk. Larger
#: windows rescan less of the cut-off chunk at their end but hold more memory while
#: their chunks are in the put's lanes.
_READ: Final = 3 * MAX_CHUNK // 2


def chunk_boundaries(data: bytes | bytearray | memoryview) -> list[int]:
    """Return the length of every chunk of ``data`` (the whole buffer at once)."""
    if not len(data):
        return []
    return [
        int(c.length) for c in _fastcdc(memoryview(data), MIN_CHUNK, AVG_CHUNK, MAX_CHUNK, False)
    ]


def _fill(source: BinaryIO, window: bytearray, filled: int) -> tuple[int, bool]:
    """Read ``source`` into ``window`` from ``filled`` on; return the new fill and
    whether the source may have more (``False`` once a read came back empty)."""
    view = memoryview(window)
    readinto = getattr(source, "readinto", None)
    while filled < len(window):
        if readinto is not None:
            count = readinto(view[filled:])
        else:  # a stream with only read(): one copy more
            block = source.read(len(window) - filled)
            count = len(block) if block else 0
            view[filled : filled + count] = block or b""
        if not count:
            return filled, False
        filled += count
    return filled, True


def iter_chunks(source: BinaryIO, size_hint: int | None = None) -> Iterator[memoryview]:
    """Yield the content-defined chunks of ``source``, read to its end, as read-only
    views (each stays valid, and unchanged, for as long as it is referenced).

    Memory stays within a few maximal chunks whatever the source's size: a window
    is dropped once no chunk of it is referenced. ``size_hint`` (the source's size,
    when known) keeps the window of a small source small. An empty source yields
    nothing.
    """
    tail = memoryview(b"")
    left = size_hint
    more = True
    while more:
        # One byte more than the hint: a read that comes back short ends the stream
        # without another round.
        want = _READ if left is None else max(1, min(_READ, left + 1))
        window = bytearray(len(tail) + want)
        window[: len(tail)] = tail
        filled, more = _fill(source, window, len(tail))
        if left is not None:
            left -= filled - len(tail)
            if more and left < 0:
                left = None  # longer than the hint said: read full windows from here
        view = memoryview(window).toreadonly()[:filled]
        start = 0
        if filled:
            for chunk in _fastcdc(view, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK, False):
                end = start + int(chunk.length)
                if more and end == filled:
                    # Cut by the window, not by the data: this chunk starts the next
                    # window, where its real end is in view.
                    break
                yield view[start:end]
                start = end
        tail = view[start:]
