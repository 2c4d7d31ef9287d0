"""What every command shares: passphrase sources, opening a database, errors, output.

Exit codes: 0 success, 1 an error the command reported (one ``error: ...`` line on
stderr), 2 bad usage (click's own message), 130 interrupted.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

import click
from rich.console import Console

import mangostore
from mangostore.engine.connection import is_plain_sqlite
from mangostore.errors import MangoError
from mangostore.keys.kdf import (
    MAX_ITERATIONS,
    MAX_MEMORY_KIB,
    MAX_PARALLELISM,
    MIN_ITERATIONS,
    MIN_MEMORY_KIB,
    KdfParams,
)
from mangostore.keys.keyring import keyring_path

PASSPHRASE_ENV = "MANGOSTORE_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
RECOVERY_KEY_ENV = "MANGOSTORE_RECOVERY_KEY"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


class CommandError(click.ClickException):
    """A failure the command reports as one ``error: ...`` line and exit status 1."""

    exit_code = EXIT_ERROR

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the one-line message to stderr (or ``file``)."""
        click.echo(f"error: {one_line(self.format_message())}", file=file, err=file is None)


def one_line(message: str) -> str:
    """Collapse a message onto one line, so an error is always exactly one line."""
    return " ".join(message.split())


class MangoGroup(click.Group):
    """The top-level group: turns library errors and interrupts into exit statuses.

    Handling them here rather than in ``main()`` means the same rules hold when the
    group is invoked directly, as ``CliRunner`` does.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; report a :class:`MangoError` as one line and exit 1."""
        try:
            return super().invoke(ctx)
        except MangoError as exc:
            # Library messages never hold keys or passphrases (see mangostore.errors).
            message = one_line(str(exc)) or type(exc).__name__
            click.echo(f"error: {message}", err=True)
            raise click.exceptions.Exit(EXIT_ERROR) from None
        except OSError as exc:
            click.echo(f"error: {one_line(str(exc))}", err=True)
            raise click.exceptions.Exit(EXIT_ERROR) from None
        except (KeyboardInterrupt, click.Abort):
            # click turns ^C (and ^D) at a prompt into Abort; both mean "stop now".
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


def console() -> Console:
    """Return a console on the current stdout; paths and messages are never read as markup."""
    return Console(highlight=False, markup=False)


# -- passphrases -------------------------------------------------------------------------


def stdin_is_interactive() -> bool:
    """Whether a person can answer a prompt (stdin is a terminal)."""
    stream = sys.stdin
    return stream is not None and stream.isatty()


def read_key_file(path: Path) -> str:
    """Return the passphrase stored in ``path``: its text minus one trailing newline.

    Raises:
        CommandError: the file cannot be read, is not UTF-8, or holds nothing.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"key file {path} is not UTF-8 text") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise CommandError(f"key file {path} is empty")
    return text


def ask_secret(prompt: str, *, confirm: bool = False, missing: str) -> str:
    """Ask for a secret at a hidden prompt (on stderr, so stdout stays clean).

    Raises:
        CommandError: with ``missing`` as message, when no terminal can answer.
    """
    if not stdin_is_interactive():
        raise CommandError(missing)
    value = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    return str(value)


def resolve_passphrase(key_file: Path | None, *, prompt: str, confirm: bool = False) -> str:
    """Return the passphrase from ``--key-file``, else the environment, else a prompt.

    Raises:
        CommandError: unreadable key file, or nothing given and no terminal to ask.
    """
    if key_file is not None:
        return read_key_file(key_file)
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env
    return ask_secret(
        prompt,
        confirm=confirm,
        missing=(
            f"no passphrase given: pass --key-file FILE, set {PASSPHRASE_ENV}, "
            "or run in a terminal to be asked"
        ),
    )


def resolve_recovery_key() -> str:
    """Return the recovery key from the environment, else a prompt.

    Raises:
        CommandError: nothing given and no terminal to ask.
    """
    from_env = os.environ.get(RECOVERY_KEY_ENV)
    if from_env:
        return from_env
    return ask_secret(
        "Recovery key",
        missing=(
            f"no recovery key given: set {RECOVERY_KEY_ENV}, or run in a terminal to be asked"
        ),
    )


# -- options shared by commands ------------------------------------------------------------


def key_file_option(func: F) -> F:
    """Add ``--key-file FILE``: read the passphrase from a file."""
    return click.option(
        "--key-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=(
            f"Read the passphrase from FILE (one trailing newline is ignored). "
            f"Takes precedence over {PASSPHRASE_ENV}."
        ),
    )(func)


def plain_option(func: F) -> F:
    """Add ``--plain``: open an unencrypted database, with no passphrase."""
    return click.option(
        "--plain",
        is_flag=True,
        help="The database is unencrypted: open it without a passphrase.",
    )(func)


def kdf_options(defaults: KdfParams | None) -> Callable[[F], F]:
    """Add the three Argon2id cost options, bounded by the library's safe range.

    With ``defaults`` the options show and use them; without, an unset option is
    ``None`` (the command keeps the database's current value).
    """
    keep = "the current value"

    def decorate(func: F) -> F:
        for name, low, high, attr, what in reversed(
            (
                ("--kdf-memory-kib", MIN_MEMORY_KIB, MAX_MEMORY_KIB, "memory_kib", "memory (KiB)"),
                ("--kdf-iterations", MIN_ITERATIONS, MAX_ITERATIONS, "iterations", "passes"),
                ("--kdf-parallelism", 1, MAX_PARALLELISM, "parallelism", "lanes"),
            )
        ):
            default = getattr(defaults, attr) if defaults is not None else None
            func = click.option(
                name,
                type=click.IntRange(low, high),
                default=default,
                show_default=default if default is not None else keep,
                help=f"Argon2id {what} used to derive the key from the passphrase.",
            )(func)
        return func

    return decorate


def make_kdf(
    memory_kib: int | None,
    iterations: int | None,
    parallelism: int | None,
    *,
    base: KdfParams,
) -> KdfParams:
    """Combine the KDF options with ``base`` (for options left unset) and check the result.

    Raises:
        ConfigurationError: the parameters are outside the safe range.
    """
    params = KdfParams(
        memory_kib=base.memory_kib if memory_kib is None else memory_kib,
        iterations=base.iterations if iterations is None else iterations,
        parallelism=base.parallelism if parallelism is None else parallelism,
    )
    params.check()
    return params


# -- opening -----------------------------------------------------------------------------


def open_existing(
    path: Path,
    *,
    plain: bool,
    key_file: Path | None,
) -> mangostore.Database:
    """Open an existing database as it is, without migrating it.

    Raises:
        click.UsageError: ``--plain`` together with ``--key-file``.
        CommandError: no passphrase could be had.
        MangoError: whatever opening refused (wrong passphrase, not a database, ...).
    """
    if path.is_file() and path.stat().st_size == 0:
        raise CommandError(
            f"{path} is empty (0 bytes): it holds no database; make one with "
            f"'mangostore init {path}'"
        )
    if plain:
        if key_file is not None:
            raise click.UsageError("--plain opens without a passphrase; drop --key-file")
        return mangostore.open(path, encrypted=False, create=False, migrate=False)
    if is_unencrypted_sqlite(path) and not keyring_path(path).exists():
        # Said before asking for a passphrase that could not be used anyway.
        raise CommandError(f"{path} is an unencrypted database: open it with --plain")
    passphrase = resolve_passphrase(key_file, prompt=f"Passphrase for {path.name}")
    return mangostore.open(path, passphrase, create=False, migrate=False)


class Feature(NamedTuple):
    """What a command group works on, and the schema version it needs."""

    name: str
    needs_version: int


def open_for(
    path: Path, *, plain: bool, key_file: Path | None, feature: Feature
) -> mangostore.Database:
    """Open an existing database for a command group that needs ``feature``'s schema.

    Commands never migrate behind the user's back: an older database is refused with
    the command that upgrades it.

    Raises:
        CommandError: the schema is older than ``feature.needs_version``.
    """
    db = open_existing(path, plain=plain, key_file=key_file)
    if db.schema_version < feature.needs_version:
        version = db.schema_version
        db.close()
        raise CommandError(
            f"{path} is at schema version {version}; {feature.name} needs version "
            f"{feature.needs_version}: run 'mangostore migrate {path}' first"
        )
    return db


def resolve_user(db: mangostore.Database, user: str, *, erased_ok: bool = False) -> str:
    """Return the id of the user named ``user`` (a user name, or an id as given).

    With ``erased_ok``, the id of an erased user is accepted too (erasing again is
    harmless, and finishes an interrupted erasure).

    Raises:
        CommandError: no such user.
    """
    found = db.users.get_by_username(user)
    if found is not None:
        return found.id
    if db.users.exists(user):
        return user
    if erased_ok and db.keyring is not None and user in db.keyring.erased_users():
        return user
    raise CommandError(f"there is no user named (or with id) {user!r}")


def utc_text(ms: int | None, missing: str | None = None) -> str | None:
    """Render epoch milliseconds as ``YYYY-MM-DD HH:MM:SS`` (UTC); ``missing`` for None."""
    if ms is None:
        return missing
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def is_unencrypted_sqlite(path: Path) -> bool:
    """Whether ``path`` is an SQLite database readable without a key (asked of SQLite)."""
    return is_plain_sqlite(str(path))


def existing_database(func: F) -> F:
    """Add the ``PATH`` argument of a command that opens an existing database."""
    return click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))(
        func
    )


def human_bytes(size: int) -> str:
    """Render a byte count the way a person reads it (``1.5 MiB``)."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
