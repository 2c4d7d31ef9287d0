"""Opening a database and using its tables does not import NumPy: the knowledge graph
does (``db.kg``, whose vectors are NumPy arrays, and ``db.maintenance()``, which flushes
the graph's read counts). A process in which ``import numpy`` fails runs the README's
basic use: a new encrypted file, writes and reads of tables, memory, reopening.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import FAST_KDF

#: Makes every ``import numpy...`` fail, as in an environment without NumPy.
BLOCKER = """
import sys

class NoNumpy:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" or name.startswith("numpy."):
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, NoNumpy())
"""

APP = textwrap.dedent(
    """
    import sys

    try:
        import numpy
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker let numpy through")

    import mangostore
    from mangostore import KdfParams, Settings

    path, passphrase = sys.argv[1], "correct horse battery staple"
    kdf = KdfParams(memory_kib={memory}, iterations={iterations}, parallelism={parallelism})
    settings = Settings(kdf=kdf)
    db, recovery_key = mangostore.create(path, passphrase=passphrase, settings=settings)
    ann = db.users.create(username="ann", security_profile={{"mfa": True}})
    site = db.projects.create(user_id=ann.id, name="site", path="/home/ann/site")
    db.command_history.record(ann.id, "git push", command_type="voice", exit_code=0)
    db.memory.remember(ann.id, "shell", "fish")
    db.close()
    with mangostore.open(path, passphrase=passphrase, settings=settings) as db:
        print(db.users.get(ann.id).security_profile)
        print(db.projects.get(site.id).path)
        print(db.command_history.search(ann.id, "push")[0].command)
        print(db.memory.recall(ann.id, query="which shell")[0].value)
    print("numpy" in sys.modules)
    """
).format(
    memory=FAST_KDF.memory_kib, iterations=FAST_KDF.iterations, parallelism=FAST_KDF.parallelism
)


def test_the_basic_use_runs_without_numpy(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER + APP, str(tmp_path / "app.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "{'mfa': True}",
        "/home/ann/site",
        "git push",
        "fish",
        "False",
    ]
