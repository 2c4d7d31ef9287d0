"""The background schedule: rounds after writes, and quiet after a failed round."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from mangostore.errors import SyncTransportError
from mangostore.sync import scheduler
from mangostore.sync.scheduler import RETRIES, SyncScheduler


def _wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.02)


def test_a_write_that_lands_during_a_round_calls_for_another() -> None:
    version = [0]
    pending = [True]
    calls: list[int] = []

    def run() -> None:
        calls.append(1)
        if len(calls) == 1:
            version[0] += 1  # another thread commits while this round runs
        else:
            pending[0] = False

    sched = SyncScheduler(
        run,
        changed=lambda: version[0],
        pending=lambda: pending[0],
        interval_s=3600,
        after_write_s=0,
    )
    sched.start()
    try:
        _wait_for(lambda: len(calls) >= 2)
        time.sleep(1.2)  # two more polls: nothing pending, so no third round
    finally:
        sched.stop()
    assert len(calls) == 2


def test_after_a_failed_round_writes_wait_for_the_next_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scheduler, "_BACKOFF_BASE_S", 0.001)
    version = [0]
    calls: list[int] = []

    def run() -> None:
        calls.append(1)
        version[0] += 1  # the failure is recorded: a commit
        raise SyncTransportError("the relay is down")

    sched = SyncScheduler(
        run, changed=lambda: version[0], pending=lambda: True, interval_s=3600, after_write_s=0
    )
    sched.start()
    try:
        _wait_for(lambda: sched.failures == 1)
        version[0] += 1  # a local write after the failure
        time.sleep(1.2)
    finally:
        sched.stop()
    assert (sched.rounds, len(calls)) == (1, RETRIES + 1)
