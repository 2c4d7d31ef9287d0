"""The ``mangostore`` command line.

Every command is documented in ``docs/cli.md``. Exit statuses: 0 success, 1 an
error (one ``error: ...`` line on stderr), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import logging

import click

import mangostore
from mangostore.cli.audit import audit
from mangostore.cli.auth import sessions, user
from mangostore.cli.backup import backup
from mangostore.cli.common import MangoGroup
from mangostore.cli.compliance import compliance
from mangostore.cli.database import init, passwd, status
from mangostore.cli.demo import demo
from mangostore.cli.dump import dump
from mangostore.cli.files import files
from mangostore.cli.kg import kg
from mangostore.cli.mcp import mcp
from mangostore.cli.memory import memory
from mangostore.cli.migrate import migrate
from mangostore.cli.notify import notify
from mangostore.cli.privacy import privacy
from mangostore.cli.query import key, query
from mangostore.cli.rotation import rotate_keys
from mangostore.cli.serve import serve
from mangostore.cli.stats import stats
from mangostore.cli.sync import sync
from mangostore.cli.sync_server import serve_sync

__all__ = ["cli", "main"]


@click.group(cls=MangoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(mangostore.__version__, prog_name="mangostore")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show the library's log messages (slow queries, delivery failures) on stderr.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """mangostore: the local-first, encrypted, embedded database of AlphanumericMango.

    Commands that open an encrypted database take the passphrase from --key-file,
    else the MANGOSTORE_PASSPHRASE environment variable, else a hidden prompt.
    """
    if verbose:
        # The library only logs (its logger has a NullHandler); the command line is an
        # application and decides, like any other, where the messages go.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        library = logging.getLogger("mangostore")
        level = library.level
        library.addHandler(handler)
        library.setLevel(logging.INFO)

        def restore() -> None:
            # The group may run again in one process (tests, an embedding program).
            library.removeHandler(handler)
            library.setLevel(level)

        ctx.call_on_close(restore)


for _command in (init, status, migrate, passwd, demo, notify, query, dump, key):
    cli.add_command(_command)
cli.add_command(memory)
cli.add_command(kg)
cli.add_command(audit)
cli.add_command(privacy)
cli.add_command(compliance)
cli.add_command(stats)
cli.add_command(user)
cli.add_command(sessions)
cli.add_command(rotate_keys)
cli.add_command(sync)
cli.add_command(backup)
cli.add_command(serve_sync)
cli.add_command(serve)
cli.add_command(files)
cli.add_command(mcp)


def main() -> None:
    """Run the command line (the ``mangostore`` console script)."""
    cli(prog_name="mangostore")
