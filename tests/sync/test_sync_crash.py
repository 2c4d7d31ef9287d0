"""A device killed while it applies pulled batches loses nothing and converges.

Device A (a file) makes rows in rounds, syncing after each, so the relay holds one batch
per round. Device B (a file) has pending changes of its own, one of them a user name
A also took. A worker process opens B and applies the relay's batches
(``sync_crash_worker.py``; the relay's batches go to it pickled, in relay order, so
its cursors are the test's) and is killed with SIGKILL while it applies: by itself,
inside the transaction of a batch, or from here at some moment.

After B is opened again: the file is intact (``integrity_check``), no reference is
broken, every batch up to B's cursor is applied whole and none after it (a batch and
the cursor move commit together), B's own pending changes are still pending, and a
further sync of both devices ends with the same rows on each.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import PASSPHRASE
from tests.sync.test_convergence import logical_content

import mangostore
from mangostore import Settings
from mangostore.sync import MemoryRelay

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not hasattr(signal, "SIGKILL"), reason="the platform cannot kill a process with SIGKILL"
    ),
]

WORKER = Path(__file__).with_name("sync_crash_worker.py")
ROUNDS = 8
COMMANDS_PER_ROUND = 25
#: Seconds a worker may take before the test gives up on it.
WORKER_TIMEOUT_S = 120


def _rounds_on_a(
    a: mangostore.Database, relay: MemoryRelay, *, graph: bool = True
) -> tuple[str, list[int]]:
    """Make A's rows round by round, syncing after each; return the user id and the
    relay position of each round's batch. Without ``graph`` no round brings a
    knowledge-graph entity, so B applies a page of batches in one transaction (a batch
    with entities is applied alone)."""
    user = a.users.create(username="ann", email="ann@example.org", preferences={"r": 0})
    positions: list[int] = []
    for r in range(ROUNDS):
        project = a.projects.create(user_id=user.id, name=f"p{r}", path=f"/src/p{r}")
        for c in range(COMMANDS_PER_ROUND):
            a.command_history.create(
                user_id=user.id, project_id=project.id, command=f"a r{r} c{c}", timestamp=r
            )
        prefs = dict(a.users.get(user.id).preferences or {})
        prefs[f"k{r}"] = r
        a.users.update(user.id, preferences=prefs)
        if graph:
            a.kg.upsert_entity(user.id, "command", f"tool{r}")
        a.sync.sync()
        positions.append(len(relay.pull(a.sync.vault_id, 0, 1 << 30)))
    return user.id, positions


@pytest.fixture
def two_files(
    tmp_path: Path, relay: MemoryRelay, fast_settings: Settings, request: pytest.FixtureRequest
) -> tuple[Path, Path, str, list[int]]:
    """A with its rounds synced to ``relay``, and B with pending rows of its own (both
    closed): the paths, A's user id and the relay position of each round."""
    a, _ = mangostore.create(tmp_path / "a.db", passphrase=PASSPHRASE, settings=fast_settings)
    a.sync.enable(relay)
    b, _ = a.sync.new_device(tmp_path / "b.db", PASSPHRASE, settings=fast_settings)
    # B syncs once on joining, as a new device does: A hears of it, and keeps what B
    # has yet to apply (see compact()).
    b.sync.connect(relay)
    b.sync.sync()
    mine = b.users.create(username="ann", email="b@example.org")
    for c in range(5):
        b.command_history.create(user_id=mine.id, command=f"b c{c}", timestamp=c)
    b.close()
    user_id, positions = _rounds_on_a(a, relay, graph=getattr(request, "param", True))
    a.close()
    return tmp_path / "a.db", tmp_path / "b.db", user_id, positions


def _run_worker(
    db_path: Path, relay: MemoryRelay, vault_id: str, die_after: int, *, pages: bool = False
) -> int:
    """Run the worker on B until it is killed; return its exit status."""
    batches = [p.batch for p in relay.pull(vault_id, 0, 1 << 30)]
    batches_file = db_path.with_name("batches.pickle")
    batches_file.write_bytes(pickle.dumps(batches))
    env = {**os.environ, "MANGOSTORE_PASSPHRASE": PASSPHRASE}
    args = [sys.executable, str(WORKER), str(db_path), str(batches_file), str(die_after)]
    args += ["pages"] if pages else []
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None
        if die_after == 0:
            # Killed from here once a few batches have gone through.
            for _ in range(4):
                line = proc.stdout.readline()
                assert line, proc.stderr.read() if proc.stderr else ""
            proc.kill()
        _, err = proc.communicate(timeout=WORKER_TIMEOUT_S)
        assert proc.returncode == -signal.SIGKILL, err.decode(errors="replace")
        return proc.returncode


def _intact(db: mangostore.Database) -> bool:
    """``integrity_check`` says ok (through ``db.query``, which reads the full-text
    indexes as they are now) and no reference is broken."""
    checked = [str(r[0]) for r in db.query("PRAGMA integrity_check", use_cache=False)]
    broken = db.query("PRAGMA foreign_key_check", use_cache=False)
    return checked == ["ok"] and not broken


def _check_after_crash(b: mangostore.Database, a_user: str, positions: list[int]) -> None:
    assert _intact(b)
    cursor = b.sync.status().cursor
    rows = b.query("SELECT command FROM command_history WHERE command LIKE 'a r%'", use_cache=False)
    got = {str(r[0]) for r in rows}
    # Each round went in one batch: the rounds at or before the cursor are whole,
    # the others are absent.
    applied = [r for r, position in enumerate(positions) if position <= cursor]
    want = {f"a r{r} c{c}" for r in applied for c in range(COMMANDS_PER_ROUND)}
    assert got == want, f"cursor {cursor}: rounds {applied} should be exactly what B has"
    if applied:
        prefs = b.users.get(a_user).preferences or {}
        assert {f"k{r}" for r in applied} <= set(prefs)
    # B's own changes are still there, still waiting to be pushed.
    mine = b.query("SELECT count(*) FROM command_history WHERE command LIKE 'b c%'")
    assert mine[0][0] == 5
    assert b.sync.status().pending_changes > 0


@pytest.mark.parametrize(
    "die_after",
    [
        pytest.param(40, id="killed-inside-the-second-batch"),
        pytest.param(150, id="killed-later-inside-a-batch"),
        pytest.param(0, id="killed-from-outside"),
    ],
)
def test_a_device_killed_while_applying_recovers_and_converges(
    two_files: tuple[Path, Path, str, list[int]],
    relay: MemoryRelay,
    fast_settings: Settings,
    die_after: int,
) -> None:
    a_path, b_path, a_user, positions = two_files
    with mangostore.open(a_path, passphrase=PASSPHRASE, settings=fast_settings) as a:
        vault_id = a.sync.vault_id
    _run_worker(b_path, relay, vault_id, die_after)

    a = mangostore.open(a_path, passphrase=PASSPHRASE, settings=fast_settings, create=False)
    b = mangostore.open(b_path, passphrase=PASSPHRASE, settings=fast_settings, create=False)
    try:
        _check_after_crash(b, a_user, positions)
        a.sync.connect(relay)
        b.sync.connect(relay)
        for _ in range(3):
            b.sync.sync()
            a.sync.sync()
        assert logical_content(a) == logical_content(b)
        names = sorted(str(r[0]) for r in b.query("SELECT username FROM users"))
        assert len(names) == 2
        assert names[0] == "ann"
        assert names[1].startswith("ann~")
        assert _intact(a)
        assert _intact(b)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("two_files", [False], indirect=True, ids=["no-graph"])
def test_a_device_killed_inside_a_page_keeps_whole_pages_and_converges(
    two_files: tuple[Path, Path, str, list[int]],
    relay: MemoryRelay,
    fast_settings: Settings,
) -> None:
    a_path, b_path, a_user, positions = two_files
    with mangostore.open(a_path, passphrase=PASSPHRASE, settings=fast_settings) as a:
        vault_id = a.sync.vault_id
    # Every batch of the relay comes in one answer, applied in one transaction; the
    # kill lands in the middle of it.
    _run_worker(b_path, relay, vault_id, 100, pages=True)
    a = mangostore.open(a_path, passphrase=PASSPHRASE, settings=fast_settings, create=False)
    b = mangostore.open(b_path, passphrase=PASSPHRASE, settings=fast_settings, create=False)
    try:
        _check_after_crash(b, a_user, positions)
        assert b.query("SELECT count(*) FROM command_history WHERE command LIKE 'a r%'")[0][0] == 0
        a.sync.connect(relay)
        b.sync.connect(relay)
        for _ in range(3):
            b.sync.sync()
            a.sync.sync()
        assert logical_content(a) == logical_content(b)
        assert _intact(a)
        assert _intact(b)
    finally:
        a.close()
        b.close()
