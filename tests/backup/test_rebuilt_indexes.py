"""A backup leaves full-text indexes out; a restore builds them again from the rows."""

from __future__ import annotations

import json
from pathlib import Path

from tests.backup.conftest import SETTINGS, fill, logical, restored
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.backup.snapshot import SchemaPlan

INDEX_SHADOWS = [
    f"{name}_{suffix}"
    for name in ("command_history_fts", "kg_search_index", "ai_memory_fts")
    for suffix in ("data", "idx", "docsize")
]


def test_the_index_shadow_tables_are_not_in_a_backup(
    vault: mangostore.Database, folder: Path, tmp_path: Path
) -> None:
    user = vault.users.list()[0].id
    vault.kg.upsert_entity(user, "project", "Mango tower", description="the build")
    vault.memory.remember(user, "shell", "fish")
    full = vault.backup.create(folder)
    for name in INDEX_SHADOWS:
        assert name not in full.tables
    # Their settings and the text a table stores are copied.
    assert "command_history_fts_config" in full.tables
    assert full.tables["kg_search_index_content"] >= 1
    vault.command_history.record(user, "cargo build --release")
    vault.memory.remember(user, "editor", "helix")
    inc = vault.backup.create(folder)
    assert inc.kind == "incremental"
    for name in INDEX_SHADOWS:
        assert name not in inc.tables
    assert restored(vault, folder, tmp_path / "r.db") == logical(vault)
    with mangostore.open(tmp_path / "r.db", passphrase=PASSPHRASE, settings=SETTINGS) as copy:
        found = copy.command_history.search(user, "build --rel")
        assert [c.command for c in found] == ["cargo build --release"]
        assert copy.memory.recall(user, query="helix")
        # The restored index goes on being kept by the triggers.
        copy.command_history.record(user, "cargo test")
        assert len(copy.command_history.search(user, "cargo")) == 2


def test_an_incremental_reads_no_index_of_the_text(
    vault: mangostore.Database, folder: Path
) -> None:
    fill(vault, users=1, commands=400)
    vault.backup.create(folder)
    user = vault.users.list()[0].id
    vault.command_history.record(user, "one more")
    inc = vault.backup.create(folder)
    # The new command and the rows the schema keeps with it (its search row, the
    # weekly statistics): 7 rows. The index's changed blocks made it 17.
    assert inc.changed_rows < 10


def test_a_plan_without_rebuilt_indexes_keeps_its_digest() -> None:
    doc = {"items": [], "tables": [], "user_version": 0, "application_id": 0}
    plan = SchemaPlan.from_json(json.loads(json.dumps(doc)))
    assert plan.rebuilt == ()
    assert plan.to_json() == doc
    rebuilt = SchemaPlan.from_json({**doc, "rebuilt": [["t", ["INSERT INTO t (t) VALUES (1)"]]]})
    assert rebuilt.rebuilt == (("t", ("INSERT INTO t (t) VALUES (1)",)),)
    assert rebuilt.digest != plan.digest
    assert SchemaPlan.from_json(rebuilt.to_json()) == rebuilt
