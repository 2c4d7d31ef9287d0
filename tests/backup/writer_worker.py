"""A second process that keeps committing to a database until a stop file appears.

Run as ``python writer_worker.py DB PASSPHRASE STOPFILE``; prints the number of
commits and the longest commit in milliseconds as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import mangostore


def main() -> None:
    path, passphrase, stop = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    commits, longest = 0, 0.0
    with mangostore.open(path, passphrase=passphrase) as db:
        user = db.users.list()[0].id
        ready = Path(str(stop) + ".ready")
        while not stop.exists():
            started = time.perf_counter()
            db.command_history.record(user, f"echo {commits}")
            longest = max(longest, time.perf_counter() - started)
            commits += 1
            if commits == 5:
                ready.touch()
    print(json.dumps({"commits": commits, "longest_ms": longest * 1000}))


if __name__ == "__main__":
    main()
