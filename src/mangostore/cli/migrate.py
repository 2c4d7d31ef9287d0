"""``mangostore migrate``: move a database's schema up, or (after confirmation) down.

Going down drops what the reverted migrations created, tables and rows included, so
the command says what will go and asks first. What goes is found by migrating a
scratch in-memory database from the current version to the target and comparing
its tables, so the list is exact rather than read out of the migrations' SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

import mangostore
from mangostore.cli.common import (
    confirm_or_refuse,
    console,
    existing_database,
    is_internal_table,
    key_file_option,
    open_existing,
    plain_option,
)
from mangostore.cli.output import emit_json, json_option
from mangostore.schema.copies import migration_copies
from mangostore.schema.runner import load_migrations


@dataclass(frozen=True, slots=True)
class Downgrade:
    """What reverting from ``current`` to ``target`` takes away."""

    current: int
    target: int
    #: The reverted migrations, newest first: (version, name).
    migrations: list[tuple[int, str]]
    #: Tables that exist now and will not afterwards, with their row counts.
    tables: dict[str, int]

    def loss(self) -> str:
        """What reverting destroys, in a few words."""
        if self.tables:
            return f"drops {len(self.tables)} tables with their rows"
        return f"removes what {len(self.migrations)} migrations added"

    def describe(self) -> list[str]:
        """The lines shown before asking: migrations, then the tables and their rows."""
        steps = ", ".join(f"{v} ({name})" for v, name in self.migrations)
        lines = [
            f"Reverting schema version {self.current} -> {self.target} undoes "
            f"{len(self.migrations)} migration{'s' if len(self.migrations) != 1 else ''}: "
            f"{steps}."
        ]
        if not self.tables:
            lines.append(
                "No table is dropped, but the columns, indexes and triggers these "
                "migrations added are."
            )
            return lines
        data = {n: r for n, r in self.tables.items() if not is_internal_table(n)}
        internal = {n: r for n, r in self.tables.items() if is_internal_table(n)}
        lines.append("These tables are dropped, with every row in them:")
        lines += [f"  {name} ({_count(rows)})" for name, rows in sorted(data.items())]
        if internal:
            rows = sum(max(r, 0) for r in internal.values())
            names = ", ".join(sorted(internal))
            lead = "and " if data else ""
            lines.append(f"  {lead}{len(internal)} internal tables ({_count(rows)}): {names}")
        return lines


def _count(rows: int) -> str:
    if rows < 0:
        return "rows not counted"
    return f"{rows:,} row{'s' if rows != 1 else ''}"


def plan_downgrade(db: mangostore.Database, target: int) -> Downgrade:
    """Work out what reverting ``db`` to ``target`` drops, without touching ``db``."""
    current = db.schema_version
    migrations = [
        (m.version, m.name) for m in reversed(load_migrations()) if target < m.version <= current
    ]
    rows = {t.name: t.rows for t in db.status().tables}
    with mangostore.open(":memory:", encrypted=False, migrate=False) as scratch:
        scratch.migrate(current)
        before = {t.name for t in scratch.status().tables}
        scratch.migrate(target)
        after = {t.name for t in scratch.status().tables}
    dropped = {name: rows.get(name, 0) for name in sorted(before - after) if name in rows}
    return Downgrade(current, target, migrations, dropped)


@click.command()
@existing_database
@click.option(
    "--to",
    "target",
    type=click.IntRange(min=0),
    default=None,
    help="Schema version to move to (default: the latest). A lower one reverts migrations.",
)
@click.option(
    "--yes", is_flag=True, help="Revert without asking (needed when there is no terminal)."
)
@json_option
@plain_option
@key_file_option
def migrate(
    path: Path, target: int | None, yes: bool, as_json: bool, plain: bool, key_file: Path | None
) -> None:
    """Apply pending migrations to PATH, or revert down to --to N.

    Reverting drops what the reverted migrations created, tables and rows included:
    the command lists it and asks first (--yes skips the question; without a
    terminal, --yes is required). A copy of the database is saved beside it before
    anything changes, and every run happens in one transaction: a failure leaves the
    schema as it was.
    """
    with open_existing(path, plain=plain, key_file=key_file) as db:
        before = db.schema_version
        downgrade: Downgrade | None = None
        if target is not None and target < before:
            downgrade = plan_downgrade(db, target)
            for line in downgrade.describe():
                click.echo(line, err=True)
            confirm_or_refuse(
                f"Revert {path.name} to schema version {target}?",
                yes=yes,
                refusal=(
                    f"reverting {path.name} to schema version {target} {downgrade.loss()}: "
                    "pass --yes to confirm it without a terminal"
                ),
                declined=f"nothing was reverted: {path.name} is still at schema version {before}",
            )
        done = db.migrate(target)
        after = db.schema_version
        copied = bool(done) and before > 0 and db.settings.backup_before_migrate
    copies = migration_copies(path) if copied else []
    copy = copies[-1] if copies else None
    if as_json:
        result: dict[str, Any] = {
            "path": str(path),
            "from_version": before,
            "to_version": after,
            "applied": done if after >= before else [],
            "reverted": done if after < before else [],
            "dropped_tables": sorted(downgrade.tables) if downgrade and done else [],
            "copy": str(copy) if copy is not None else None,
        }
        emit_json(result)
        return
    out = console()
    if not done:
        out.print(f"{path.name} is already at schema version {after}; nothing to do.")
        return
    verb = "Applied" if after > before else "Reverted"
    steps = ", ".join(str(v) for v in done)
    # soft_wrap: a file name split over two lines is hard to copy.
    out.print(f"{verb} migrations {steps}: schema version {before} -> {after}.", soft_wrap=True)
    if copy is not None:
        out.print(f"A copy of the database from before was saved as {copy.name}.", soft_wrap=True)
