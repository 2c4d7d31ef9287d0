"""The ``mangostore`` command line.

Every command is documented in ``docs/cli.md``. Exit statuses: 0 success, 1 an
error (one ``error: ...`` line on stderr), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import click

import mangostore
from mangostore.cli.audit import audit
from mangostore.cli.auth import sessions, user
from mangostore.cli.common import MangoGroup
from mangostore.cli.database import init, migrate, passwd, status
from mangostore.cli.demo import demo
from mangostore.cli.kg import kg
from mangostore.cli.memory import memory
from mangostore.cli.notify import notify
from mangostore.cli.privacy import privacy
from mangostore.cli.stats import stats

__all__ = ["cli", "main"]


@click.group(cls=MangoGroup)
@click.version_option(mangostore.__version__, prog_name="mangostore")
def cli() -> None:
    """mangostore: the local-first, encrypted, embedded database of AlphanumericMango.

    Commands that open an encrypted database take the passphrase from --key-file,
    else the MANGOSTORE_PASSPHRASE environment variable, else a hidden prompt.
    """


for _command in (init, status, migrate, passwd, demo, notify):
    cli.add_command(_command)
cli.add_command(memory)
cli.add_command(kg)
cli.add_command(audit)
cli.add_command(privacy)
cli.add_command(stats)
cli.add_command(user)
cli.add_command(sessions)


def main() -> None:
    """Run the command line (the ``mangostore`` console script)."""
    cli(prog_name="mangostore")
