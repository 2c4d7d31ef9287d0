"""What every command shares: passphrase sources, opening a database, errors, output.

Exit codes: 0 success, 1 an error the command reported (one ``error: ...`` line on
stderr), 2 bad usage (click's own message), 130 interrupted.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import unicodedata
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
from mangostore.records import RECORD_CLASSES
from mangostore.schema.sensitive import SERVICE_SENSITIVE_FIELDS
from mangostore.security.auth import AuthPolicy

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


#: The fewest characters a new database passphrase may have: the rule the library
#: applies to user passwords (``AuthPolicy.min_password_chars``), so one rule holds
#: for every secret a person chooses.
MIN_PASSPHRASE_CHARS = AuthPolicy().min_password_chars


def check_passphrase_strength(passphrase: str, *, weak_ok: bool) -> None:
    """Refuse a new passphrase shorter than :data:`MIN_PASSPHRASE_CHARS` characters.

    Characters are counted after NFC normalisation, as for user passwords. Never
    shows the passphrase.

    Raises:
        CommandError: the passphrase is too short and ``weak_ok`` is false.
    """
    length = len(unicodedata.normalize("NFC", passphrase))
    if weak_ok or length >= MIN_PASSPHRASE_CHARS:
        return
    raise CommandError(
        f"the new passphrase has {length} character{'s' if length != 1 else ''}; a database "
        f"passphrase needs at least {MIN_PASSPHRASE_CHARS} (the rule for user passwords), "
        "since anyone with a copy of the keyring can try guesses at it offline: choose a "
        "longer one (several words work well), or pass --weak-passphrase to accept it"
    )


def weak_passphrase_option(func: F) -> F:
    """Add ``--weak-passphrase``: accept a new passphrase shorter than the rule asks."""
    return click.option(
        "--weak-passphrase",
        "weak_ok",
        is_flag=True,
        help=(
            f"Accept a new passphrase shorter than {MIN_PASSPHRASE_CHARS} characters "
            "(not recommended)."
        ),
    )(func)


def confirm_or_refuse(question: str, *, yes: bool, refusal: str, declined: str) -> None:
    """Go on only when the user agreed to something that cannot be undone.

    ``--yes`` agrees in advance; otherwise a person is asked ``question`` (default
    no). Without a terminal to ask, the command refuses rather than guess.

    Raises:
        CommandError: with ``refusal`` when nobody can be asked, with ``declined``
            when the answer is no.
    """
    if yes:
        return
    if not stdin_is_interactive():
        raise CommandError(refusal)
    if not click.confirm(question, default=False, err=True):
        raise CommandError(declined)


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
    # Said before asking for a passphrase that could not be used anyway.
    ring = keyring_path(path)
    if not ring.exists():
        if is_unencrypted_sqlite(path):
            raise CommandError(f"{path} is an unencrypted database: open it with --plain")
        raise CommandError(
            f"{path} is not a database mangostore can open: it is not an unencrypted SQLite "
            f"database, and no keyring ({ring.name}) is beside it. If it is an encrypted "
            "mangostore database, put its keyring back from where you keep backups"
        )
    refuse_foreign_keyring(ring)
    passphrase = resolve_passphrase(key_file, prompt=f"Passphrase for {path.name}")
    return mangostore.open(path, passphrase, create=False, migrate=False)


def refuse_foreign_keyring(ring: Path) -> None:
    """Refuse a keyring path that holds something other than JSON (a text file, say).

    A keyring is a JSON object written by mangostore; a damaged one still starts as
    one. Only the sidecar is read, never the database file.

    Raises:
        CommandError: the file does not start like a JSON object.
    """
    try:
        with ring.open("rb") as handle:
            start = handle.read(64).lstrip()
    except OSError as exc:
        raise CommandError(f"cannot read the keyring {ring}: {exc.strerror}") from None
    if start and not start.startswith(b"{"):  # an empty one is damaged: the library says so
        raise CommandError(
            f"{ring} is not a mangostore keyring (a keyring is a JSON file mangostore "
            "writes; this one holds something else): put the database's own keyring back "
            "from a backup"
        )


def check_new_database_path(path: Path) -> None:
    """Refuse, with a clear message, a path whose folder cannot hold a new database.

    Raises:
        CommandError: the folder does not exist or is not a folder.
    """
    folder = path.parent
    if not folder.exists():
        raise CommandError(
            f"the folder {folder} does not exist: create it first (mkdir -p {folder}), "
            "or choose a path in an existing folder"
        )
    if not folder.is_dir():
        raise CommandError(f"{folder} is not a folder, so {path} cannot be made in it")


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


#: The tables that hold an application's data: one per repository (``db.users``, ...)
#: and the services' own encrypted ones. The rest are bookkeeping (migrations, key
#: material, lock-out counters) and search structures, which ``status`` and ``stats``
#: group unless ``--all`` is given.
DATA_TABLES = frozenset({cls.__table__ for cls in RECORD_CLASSES} | set(SERVICE_SENSITIVE_FIELDS))


def is_internal_table(name: str) -> bool:
    """Whether ``name`` is one of mangostore's own tables rather than the application's."""
    return name not in DATA_TABLES


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
