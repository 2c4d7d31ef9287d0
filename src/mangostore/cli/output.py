"""How commands print: ``--json`` and its times, ``-o/--output``, deprecation notes.

The conventions every command follows:

- ``--json`` prints one JSON document on standard output, whatever else the command
  does; times in it are ISO 8601 in UTC with a ``Z`` (``2024-06-01T09:12:44.123Z``).
- A command that writes a file names it with ``-o/--output``; ``-`` (or leaving the
  option out, where the data has nowhere else to go) means standard output.
- Messages about how a command was called (a deprecated form, a warning) go to
  standard error, so standard output stays machine-readable.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def iso_time(ms: int | None) -> str | None:
    """Render epoch milliseconds as ISO 8601 in UTC (``2024-06-01T09:12:44.123Z``).

    ``None`` stays ``None`` (JSON ``null``). Built by adding a ``timedelta`` rather than
    dividing into a float, so every millisecond survives.
    """
    if ms is None:
        return None
    stamp = _EPOCH + dt.timedelta(milliseconds=ms)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_option(func: F) -> F:
    """Add ``--json``: print one JSON document on standard output instead of text."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the result as one JSON document."
    )(func)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on standard output (non-ASCII kept as it is)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def output_option(what: str, *, file_okay: bool = True, dir_okay: bool = False) -> Callable[[F], F]:
    """Add ``-o/--output``, the one way a command is told where to write ``what``."""
    return click.option(
        "-o",
        "--output",
        type=click.Path(file_okay=file_okay, dir_okay=dir_okay, allow_dash=True, path_type=Path),
        help=f"Write {what} to this path ('-': standard output).",
    )


def file_output(path: Path | None) -> Path | None:
    """The file an ``--output`` value names; ``None`` for standard output (left out, ``-``)."""
    return None if path is None or str(path) == "-" else path


def deprecated_form(old: str, new: str) -> None:
    """Tell the user, on standard error, that ``old`` still works but ``new`` replaces it."""
    click.echo(f"warning: {old} is deprecated and will be removed; use {new}", err=True)


def warn(message: str) -> None:
    """Print a one-line ``warning: ...`` on standard error."""
    click.echo(f"warning: {message}", err=True)
