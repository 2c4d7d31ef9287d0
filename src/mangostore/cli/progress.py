"""Progress bars for long commands, drawn with rich on standard error.

A command asks :func:`progress_bar` for a :class:`mangostore.progress.Progress` callback
and hands it to the library call. The bar is drawn only when standard error is a
terminal and the command is not printing ``--json``: piped, redirected or captured
output (and every test through click's runner) gets no bar and pays nothing, and
standard output is never touched. The bar is transient: it disappears when the work
is done, leaving the command's own output as it was.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from mangostore.progress import Progress as ProgressCallback

__all__ = ["progress_bar", "stderr_is_terminal"]


def stderr_is_terminal() -> bool:
    """Whether standard error is a terminal (not a pipe, a file or a test's capture)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())


@contextmanager
def progress_bar(
    *, as_json: bool = False, units: Literal["items", "bytes"] = "items"
) -> Iterator[ProgressCallback | None]:
    """Yield a callback that draws the library's progress reports as a bar on stderr.

    Yields ``None`` (no bar, no cost) with ``as_json`` or when standard error is not a
    terminal. Each stage the operation reports gets the bar to itself: its name as
    the description, ``done/total`` (a pulsing bar while the total is not known); with
    ``units="bytes"`` the counts are shown as sizes, with the rate.
    """
    if as_json or not stderr_is_terminal():
        yield None
        return
    counts: tuple[ProgressColumn, ...] = (
        (DownloadColumn(), TransferSpeedColumn()) if units == "bytes" else (MofNCompleteColumn(),)
    )
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        *counts,
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    with bar:
        task = bar.add_task("working", total=None)
        shown: list[str] = []

        def report(done: int, total: int | None, stage: str) -> None:
            bar.update(task, description=stage, completed=done, total=total)
            if shown[-1:] != [stage]:
                # A new stage is drawn at once, however short it is; the rest waits
                # for the bar's own refresh (ten times a second).
                shown.append(stage)
                bar.refresh()

        yield report
