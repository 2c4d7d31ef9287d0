"""Progress reports of long operations (``mangostore.progress``): the counts each
operation reports, a batch at a time, and what a callback that raises leaves behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import mangostore
from design import Rows
from mangostore.clock import ManualClock
from mangostore.keys.rotation import rotate_field_keys
from mangostore.kg import HashingEmbedder
from mangostore.kg.graph import KnowledgeGraph
from mangostore.kg.mcp_jsonl import REPORT_EVERY
from mangostore.privacy import verify_export
from mangostore.privacy.service import DAY_MS
from mangostore.progress import Progress, Reporter

Call = tuple[int, int | None, str]


class Stop(Exception):
    """Raised by a callback to stop the operation it watches."""


class Recorder:
    """A progress callback that records its calls and raises :class:`Stop` when told to."""

    def __init__(self, stop: Callable[[int, int | None, str], bool] | None = None) -> None:
        self.calls: list[Call] = []
        self._stop = stop

    def __call__(self, done: int, total: int | None, stage: str) -> None:
        self.calls.append((done, total, stage))
        if self._stop is not None and self._stop(done, total, stage):
            raise Stop

    def stages(self) -> list[str]:
        seen: list[str] = []
        for _, _, stage in self.calls:
            if not seen or seen[-1] != stage:
                seen.append(stage)
        return seen

    def of(self, stage: str) -> list[tuple[int, int | None]]:
        return [(d, t) for d, t, s in self.calls if s == stage]

    def check(self) -> None:
        """Each stage's calls are together, counts never go down nor pass the total,
        the same numbers never come twice, and each stage ends with done == total."""
        stages = self.stages()
        assert len(stages) == len(set(stages)), f"a stage came back: {stages}"
        assert len(self.calls) == len(set(self.calls)), "the same call twice"
        for stage in stages:
            calls = self.of(stage)
            dones = [d for d, _ in calls]
            assert dones == sorted(dones), f"{stage}: counts went down: {calls}"
            assert calls[0][0] == 0, f"{stage}: did not start at 0: {calls}"
            assert all(t is None or d <= t for d, t in calls), f"{stage}: done > total"
            assert calls[-1][0] == calls[-1][1], f"{stage}: did not end done == total: {calls}"


def test_a_plain_function_is_a_progress_callback() -> None:
    seen: list[Call] = []

    def show(done: int, total: int | None, stage: str) -> None:
        seen.append((done, total, stage))

    callback: Progress = show  # mypy checks the shape
    callback(1, 2, "x")
    assert seen == [(1, 2, "x")]


def test_the_reporter_reports_every_n_units_and_ends_at_the_total() -> None:
    recorder = Recorder()
    report = Reporter(recorder, every=10)
    report.begin("work", 25)
    for _ in range(25):
        report.advance()
    report.end()
    assert recorder.calls == [(0, 25, "work"), (10, 25, "work"), (20, 25, "work"), (25, 25, "work")]


def test_the_reporter_takes_a_total_learned_late_or_grown() -> None:
    recorder = Recorder()
    report = Reporter(recorder)
    report.begin("work")
    report.advance(0, total=2)
    report.advance(3)  # more than announced: the total follows
    report.end()
    report.begin("next", 0)
    report.end()
    assert recorder.calls == [
        (0, None, "work"),
        (0, 2, "work"),
        (3, 3, "work"),
        (0, 0, "next"),
    ]
    recorder.check()


def test_without_a_callback_the_reporter_only_counts() -> None:
    report = Reporter(None, every=1)
    assert not report.wanted
    report.begin("work", 5)
    report.advance(4)
    assert report.done == 4
    report.end(7)
    assert report.done == 7


# -- the knowledge graph -----------------------------------------------------------------


def graph_user(db: mangostore.Database, entities: int) -> str:
    """A user with ``entities`` entities whose texts are queued for embedding."""
    user = db.users.create(username="ann")
    db.kg.set_embedder(HashingEmbedder())
    for number in range(entities):
        db.kg.upsert_entity(user.id, "concept", f"thing number {number}", dedup=False)
    return str(user.id)


def vectors(db: mangostore.Database) -> int:
    return int(db.query("SELECT count(*) FROM kg_embeddings")[0][0])


def test_embedding_reports_each_batch_and_ends_at_the_queue_size(
    plain_db: mangostore.Database,
) -> None:
    user_id = graph_user(plain_db, 20)
    recorder = Recorder()
    embedded = plain_db.kg.embed_pending(user_id, batch=8, progress=recorder)
    assert embedded == 20
    recorder.check()
    assert recorder.stages() == ["embedding"]
    assert recorder.of("embedding") == [(0, None), (0, 20), (8, 20), (16, 20), (20, 20)]


def test_loading_the_default_model_is_a_stage_of_its_own(
    plain_db: mangostore.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = graph_user(plain_db, 3)
    monkeypatch.setattr("mangostore.kg.semantic.default_embedder", HashingEmbedder)
    graph = KnowledgeGraph(plain_db)  # the default embedder, not loaded yet
    recorder = Recorder()
    graph.embed_pending(user_id, progress=recorder)
    recorder.check()
    assert recorder.stages() == ["loading the embedding model", "embedding"]
    assert recorder.of("loading the embedding model") == [(0, 1), (1, 1)]
    again = Recorder()
    graph.embed_pending(user_id, progress=again)
    assert again.stages() == ["embedding"]  # loaded once
    assert again.of("embedding")[-1] == (0, 0)


def test_without_an_embedder_nothing_is_reported(plain_db: mangostore.Database) -> None:
    user_id = graph_user(plain_db, 3)
    plain_db.kg.set_embedder(None)
    recorder = Recorder()
    assert plain_db.kg.embed_pending(user_id, progress=recorder) == 0
    assert recorder.calls == []


def test_stopping_embedding_at_once_stores_no_vector(plain_db: mangostore.Database) -> None:
    user_id = graph_user(plain_db, 20)
    with pytest.raises(Stop):
        plain_db.kg.embed_pending(user_id, batch=8, progress=Recorder(lambda d, t, s: True))
    assert vectors(plain_db) == 0


def test_stopped_embedding_keeps_its_committed_batches_and_finishes_later(
    plain_db: mangostore.Database,
) -> None:
    user_id = graph_user(plain_db, 20)
    with pytest.raises(Stop):
        plain_db.kg.embed_pending(user_id, batch=8, progress=Recorder(lambda d, t, s: d > 0))
    assert vectors(plain_db) == 8
    assert plain_db.kg.embed_pending(user_id, batch=8) == 12
    assert vectors(plain_db) == 20


def jsonl(entities: int, relations: int) -> list[str]:
    lines = [
        json.dumps({"type": "entity", "name": f"e{n}", "entityType": "concept"})
        for n in range(entities)
    ]
    lines += [
        json.dumps({"type": "relation", "from": f"e{n}", "to": f"e{n + 1}", "relationType": "x"})
        for n in range(relations)
    ]
    return lines


def test_an_import_reports_a_batch_of_items_at_a_time(plain_db: mangostore.Database) -> None:
    user = plain_db.users.create(username="ann")
    plain_db.kg.set_embedder(None)
    recorder = Recorder()
    entities = 2 * REPORT_EVERY + 50
    plain_db.kg.import_jsonl(user.id, jsonl(entities, 30), progress=recorder)
    recorder.check()
    assert recorder.stages() == ["importing entities", "importing relations"]
    assert recorder.of("importing entities") == [
        (0, entities),
        (REPORT_EVERY, entities),
        (2 * REPORT_EVERY, entities),
        (entities, entities),
    ]
    assert recorder.of("importing relations") == [(0, 30), (30, 30)]


@pytest.mark.parametrize("stage", ["importing entities", "importing relations"])
def test_a_stopped_import_is_rolled_back_whole(plain_db: mangostore.Database, stage: str) -> None:
    user = plain_db.users.create(username="ann")
    plain_db.kg.set_embedder(None)
    lines = jsonl(REPORT_EVERY + 10, 5)
    with pytest.raises(Stop):
        plain_db.kg.import_jsonl(user.id, lines, progress=Recorder(lambda d, t, s: s == stage))
    assert plain_db.query("SELECT count(*) FROM kg_entities")[0][0] == 0
    assert plain_db.query("SELECT count(*) FROM kg_relations")[0][0] == 0
    counts = plain_db.kg.import_jsonl(user.id, lines)
    assert counts["entities_created"] == REPORT_EVERY + 10


# -- key rotation --------------------------------------------------------------------------


def sealed_users(db: mangostore.Database, users: int) -> None:
    rows = Rows(db)
    for number in range(users):
        rows.user(security_profile={"pin": f"{number:04d}"})  # an encrypted column


def primary_keys(db: mangostore.Database) -> set[str]:
    return {str(r[0]) for r in db.query("SELECT id FROM field_keys WHERE status = 'primary'")}


def test_rotation_reports_new_keys_then_re_encryption(memory_db: mangostore.Database) -> None:
    sealed_users(memory_db, 5)
    recorder = Recorder()
    report = rotate_field_keys(memory_db, batch_size=2, progress=recorder)
    recorder.check()
    assert recorder.stages() == ["new keys", "re-encrypting"]
    assert recorder.of("new keys") == [(0, None), (0, 5), (5, 5)]
    assert report.rows_scanned == 5
    assert recorder.of("re-encrypting") == [(0, 5), (2, 5), (4, 5), (5, 5)]


def test_a_rotation_refused_at_its_first_report_changes_nothing(
    memory_db: mangostore.Database,
) -> None:
    sealed_users(memory_db, 3)
    before = primary_keys(memory_db)
    with pytest.raises(Stop):
        rotate_field_keys(memory_db, progress=Recorder(lambda d, t, s: True))
    assert primary_keys(memory_db) == before
    assert memory_db.query("SELECT count(*) FROM field_key_rotations")[0][0] == 0


# -- retention and export ----------------------------------------------------------------


def old_history(db: mangostore.Database, clock: ManualClock) -> str:
    """Three commands 100 days old and one new one; returns the user's id."""
    rows = Rows(db)
    user = rows.user()
    for number in range(3):
        rows.command(user_id=user.id, command=f"old {number}")
    clock.advance(100 * DAY_MS)
    rows.command(user_id=user.id, command="new")
    return str(user.id)


def test_retention_reports_one_stage_a_table(
    clocked_memory_db: mangostore.Database, clock: ManualClock, tmp_path: Path
) -> None:
    old_history(clocked_memory_db, clock)
    recorder = Recorder()
    clocked_memory_db.privacy.apply_retention(archive_dir_path=tmp_path, progress=recorder)
    recorder.check()
    assert recorder.stages() == ["command_history", "notifications", "security_events"]
    assert recorder.of("command_history") == [(0, None), (3, 3)]
    assert recorder.of("notifications") == [(0, None), (0, 0)]


def test_retention_refused_at_once_leaves_the_database_and_the_disk_alone(
    clocked_memory_db: mangostore.Database, clock: ManualClock, tmp_path: Path
) -> None:
    old_history(clocked_memory_db, clock)
    archives = tmp_path / "archives"
    with pytest.raises(Stop):
        clocked_memory_db.privacy.apply_retention(
            archive_dir_path=archives, progress=Recorder(lambda d, t, s: True)
        )
    assert clocked_memory_db.command_history.count() == 4
    assert not archives.exists() or not list(archives.iterdir())


def test_retention_stopped_between_tables_keeps_the_tables_done(
    clocked_memory_db: mangostore.Database, clock: ManualClock, tmp_path: Path
) -> None:
    old_history(clocked_memory_db, clock)
    with pytest.raises(Stop):
        clocked_memory_db.privacy.apply_retention(
            archive_dir_path=tmp_path, progress=Recorder(lambda d, t, s: s == "notifications")
        )
    assert clocked_memory_db.command_history.count() == 1
    assert len(list(tmp_path.iterdir())) == 1  # the archive of the three old commands


def test_an_export_reports_its_rows_and_they_match_the_manifest(
    memory_db: mangostore.Database, tmp_path: Path
) -> None:
    user_id = old_history(memory_db, ManualClock())
    recorder = Recorder()
    manifest = memory_db.privacy.export_user(user_id, tmp_path / "out", progress=recorder)
    recorder.check()
    assert recorder.stages() == ["exporting rows", "exporting audit events"]
    rows = sum(f.rows for f in manifest.files if f.table != "security_events")
    assert manifest.rows("command_history") == 4
    assert recorder.of("exporting rows") == [(0, None), (0, rows), (rows, rows)]
    assert verify_export(tmp_path / "out") == []


def test_an_export_reports_every_so_many_rows(
    plain_db: mangostore.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mangostore.privacy.export.REPORT_EVERY", 3)
    user_id = old_history(plain_db, ManualClock())
    recorder = Recorder()
    manifest = plain_db.privacy.export_user(user_id, tmp_path / "out", progress=recorder)
    recorder.check()
    rows = sum(f.rows for f in manifest.files if f.table != "security_events")
    dones = [d for d, _ in recorder.of("exporting rows")]
    assert dones == [0, 0, *range(3, rows, 3), rows]


@pytest.mark.parametrize("stage", ["exporting rows", "exporting audit events"])
def test_a_stopped_export_leaves_no_file_and_removes_the_directory_it_made(
    memory_db: mangostore.Database, tmp_path: Path, stage: str
) -> None:
    user_id = old_history(memory_db, ManualClock())
    out = tmp_path / "new" / "out"
    with pytest.raises(Stop):
        memory_db.privacy.export_user(user_id, out, progress=Recorder(lambda d, t, s: s == stage))
    assert not out.exists()


def test_a_stopped_export_empties_a_directory_that_was_there(
    memory_db: mangostore.Database, tmp_path: Path
) -> None:
    user_id = old_history(memory_db, ManualClock())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Stop):
        memory_db.privacy.export_user(
            user_id, out, progress=Recorder(lambda d, t, s: s == "exporting audit events")
        )
    assert out.is_dir()
    assert list(out.iterdir()) == []
