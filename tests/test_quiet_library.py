"""The library writes nothing to the host application's stderr unless it configures logging.

Run in a fresh interpreter, as an application would be: every statement is "slow"
(threshold 0 ms), so the slow query log fires on each one. A terminal UI drawing on
the same terminal must see nothing of it; an application that configures logging
gets every line.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import FAST_KDF

APP = textwrap.dedent(
    """
    import sys
    import mangostore
    from mangostore import KdfParams, Settings

    if sys.argv[2] == "configured":
        import logging
        logging.basicConfig(level=logging.WARNING)
    kdf = KdfParams(memory_kib={memory}, iterations={iterations}, parallelism={parallelism})
    settings = Settings(kdf=kdf, slow_query_ms=0)
    with mangostore.create(sys.argv[1], "a long passphrase", settings=settings) as (db, _key):
        ann = db.users.create(username="ann", security_profile={{"mfa": True}})
        db.command_history.record(ann.id, "git push", command_type="voice", exit_code=0)
        db.command_history.search(ann.id, "push")
        db.query("SELECT count(*) FROM users")
        db.memory.remember(ann.id, "shell", "fish")
        db.memory.recall(ann.id, query="which shell")
        db.performance_report()
    print("done")
    """
).format(
    memory=FAST_KDF.memory_kib, iterations=FAST_KDF.iterations, parallelism=FAST_KDF.parallelism
)


def run_app(path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", APP, str(path), mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_nothing_reaches_stderr_by_default(tmp_path: Path) -> None:
    result = run_app(tmp_path / "app.db", "default")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert result.stderr == ""


def test_an_application_that_configures_logging_sees_slow_queries(tmp_path: Path) -> None:
    result = run_app(tmp_path / "app.db", "configured")

    assert result.returncode == 0, result.stderr
    assert "WARNING:mangostore.slow_queries:slow query" in result.stderr
