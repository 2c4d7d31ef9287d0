"""A device applying pulled batches, killed while it applies (run by ``test_sync_crash.py``).

``python sync_crash_worker.py DB BATCHES DIE_AFTER [pages]``; the passphrase comes from
``MANGOSTORE_PASSPHRASE``. With ``pages`` the relay answers whole pages (the batches
of one answer are applied in one transaction), else one batch at a time.

BATCHES is a pickled list of the relay's batches, in relay order: pushed in that order
into a fresh :class:`~mangostore.sync.MemoryRelay`, they get the cursors they had in the
test's relay, so this process pulls what the test's devices see.

The worker prints ``pulling`` once the database is open, then one line per page of
batches the relay answers, and pulls (applies) every batch. With DIE_AFTER above 0 it
sends itself SIGKILL when it is about to merge row state number DIE_AFTER: inside the
transaction that applies a batch, as a crash or a power cut would. With DIE_AFTER 0
it is left to the test to kill it.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
from typing import Any

import mangostore
from mangostore.sync import MemoryRelay, Pulled
from mangostore.sync.batches import Batch
from mangostore.sync.merge import Merger


class ReportingRelay:
    """The relay, answering one batch at a time and printing a line for each answer;
    ``pause_s`` between answers leaves a test that kills from outside time to do it
    while batches are still coming."""

    def __init__(self, relay: MemoryRelay, pause_s: float, *, pages: bool = False) -> None:
        self.relay = relay
        self.pause_s = pause_s
        self.pages = pages

    def push(self, batch: Batch) -> int:
        """Store a batch (the worker only pulls; here for the transport's shape)."""
        return self.relay.push(batch)

    def pull(self, vault_id: str, after: int, limit: int) -> list[Pulled]:
        """Answer from the relay, and say so on stdout."""
        page = self.relay.pull(vault_id, after, limit if self.pages else 1)
        print(f"page {after}", flush=True)
        time.sleep(self.pause_s)
        return page


def die_after(count: int) -> None:
    """Make the merge kill this process when it reaches state number ``count``."""
    merge = Merger.merge
    seen = 0

    def dying(self: Merger, remote: Any) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            os.kill(os.getpid(), signal.SIGKILL)
        merge(self, remote)

    Merger.merge = dying  # type: ignore[method-assign]


def main(path: str, batches_file: str, die_at: int, pages: bool) -> None:
    with open(batches_file, "rb") as source:
        batches: list[Batch] = pickle.load(source)
    relay = MemoryRelay()
    for batch in batches:
        relay.push(batch)
    if die_at > 0:
        die_after(die_at)
    db = mangostore.open(path, passphrase=os.environ["MANGOSTORE_PASSPHRASE"], create=False)
    db.sync.connect(ReportingRelay(relay, pause_s=0.0 if die_at > 0 else 0.02, pages=pages))
    print("pulling", flush=True)
    db.sync.pull()
    print("done", flush=True)
    db.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:] == ["pages"])
