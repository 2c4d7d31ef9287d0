"""The hybrid logical clock: monotonic, moved by what it receives, bounded against skew."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mangostore.clock import ManualClock
from mangostore.sync.clock import MAX_AHEAD_MS, HybridClock, pack, unpack


@given(st.integers(0, 2**47), st.integers(0, 2**16 - 1))
def test_pack_and_unpack_round_trip(ms: int, counter: int) -> None:
    assert unpack(pack(ms, counter)) == (ms, counter)


def test_ticks_keep_rising_when_the_wall_clock_jumps_back() -> None:
    wall = ManualClock(1_700_000_000_000)
    clock = HybridClock(wall)
    first = clock.tick()
    wall.set(1_600_000_000_000)
    second = clock.tick()
    assert second > first
    assert unpack(second)[0] == 1_700_000_000_000  # the counter moved, not the time


def test_ticks_within_one_millisecond_count_up() -> None:
    clock = HybridClock(ManualClock(1_700_000_000_000))
    stamps = [clock.tick() for _ in range(5)]
    assert [unpack(s)[1] for s in stamps] == [0, 1, 2, 3, 4]


def test_a_persisted_timestamp_is_the_floor_after_a_restart() -> None:
    clock = HybridClock(ManualClock(1_000), last=pack(5_000, 7))
    assert clock.tick() == pack(5_000, 8)


def test_receiving_moves_the_clock_past_the_remote_timestamp() -> None:
    wall = ManualClock(1_700_000_000_000)
    clock = HybridClock(wall)
    clock.receive(pack(1_700_000_000_500, 3))
    assert clock.tick() == pack(1_700_000_000_500, 4)
    assert clock.reading().max_ahead_ms == 0


def test_a_remote_clock_far_ahead_is_clamped_and_reported() -> None:
    wall = ManualClock(1_700_000_000_000)
    clock = HybridClock(wall)
    clock.receive(pack(1_700_000_000_000 + 3_600_000))
    assert unpack(clock.tick())[0] == 1_700_000_000_000 + MAX_AHEAD_MS
    assert clock.reading().max_ahead_ms == 3_600_000
