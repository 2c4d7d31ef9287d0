"""The relay store's contract (:class:`~mangostore.sync.server.store.RelayStore`),
checked against SQLite and PostgreSQL alike: vaults and escrow, challenges, devices
and tokens, idempotent pushes with gapless cursors, paged pulls, snapshots uploaded
in parts, sweeping and compaction, and the totals for metrics.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mangostore.errors import ValidationError
from mangostore.sync.server.sql_store import SqlRelayStore
from mangostore.sync.server.store import PUSH_MEMORY_MS, RelayStore, StoredBatch, Vault

NOW = 1_700_000_000_000
DAY_MS = 24 * 3600 * 1000
VAULT = "vault-a"
OTHER = "vault-b"
KEY = b"\x01" * 32


def _vault(store: SqlRelayStore, vault_id: str = VAULT) -> Vault:
    return store.create_vault(vault_id, KEY, NOW)


def _push_many(store: SqlRelayStore, device: str, numbers: range, vault_id: str = VAULT) -> None:
    for n in numbers:
        store.push(vault_id, device, n, 3, f"{device}/{n}".encode(), NOW)


def _all(store: SqlRelayStore, vault_id: str = VAULT) -> list[StoredBatch]:
    return store.pull(vault_id, 0, 1_000_000)


def _snapshot(
    store: SqlRelayStore, cursor: int, *, parts: int = 2, sid: str = "s1", device: str = "d1"
) -> None:
    for part in range(parts):
        last = part == parts - 1
        body = f"{sid}/{part}".encode()
        store.put_snapshot_part(VAULT, sid, device, cursor, 3, part, last, body, NOW)


def test_both_stores_conform_to_the_protocol(relay_store: SqlRelayStore) -> None:
    assert isinstance(relay_store, RelayStore)
    assert "relay" in repr(relay_store).lower()


# -- vaults and escrow -------------------------------------------------------------------


def test_a_vault_is_attached_once_and_kept_unchanged(relay_store: SqlRelayStore) -> None:
    assert relay_store.vault(VAULT) is None
    made = relay_store.create_vault(VAULT, KEY, NOW)
    assert made == Vault(VAULT, KEY, NOW, last_cursor=0, floor=0)
    again = relay_store.create_vault(VAULT, b"\x02" * 32, NOW + 5)
    assert again == made
    assert relay_store.vault(VAULT) == made
    assert relay_store.vault(OTHER) is None


def test_escrow_is_kept_replaced_and_per_vault(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    _vault(relay_store, OTHER)
    assert relay_store.escrow(VAULT) is None
    assert relay_store.escrow("no-such-vault") is None
    relay_store.put_escrow(VAULT, b"wrapped-1")
    relay_store.put_escrow(VAULT, b"wrapped-2")
    assert relay_store.escrow(VAULT) == b"wrapped-2"
    assert relay_store.escrow(OTHER) is None


# -- challenges ------------------------------------------------------------------------


def test_a_challenge_is_good_once(relay_store: SqlRelayStore) -> None:
    relay_store.add_challenge(b"c1", VAULT, "d1", NOW + 1000)
    assert relay_store.take_challenge(b"c1", VAULT, "d1", NOW)
    assert not relay_store.take_challenge(b"c1", VAULT, "d1", NOW)
    assert not relay_store.take_challenge(b"never-issued", VAULT, "d1", NOW)


def test_an_expired_challenge_is_refused(relay_store: SqlRelayStore) -> None:
    relay_store.add_challenge(b"c1", VAULT, "d1", NOW + 1000)
    relay_store.add_challenge(b"c2", VAULT, "d1", NOW + 1000)
    assert not relay_store.take_challenge(b"c1", VAULT, "d1", NOW + 1000)
    assert not relay_store.take_challenge(b"c2", VAULT, "d1", NOW + 5000)


@pytest.mark.parametrize(("vault_id", "device_id"), [(VAULT, "d2"), (OTHER, "d1")])
def test_a_challenge_of_another_device_or_vault_is_refused_and_spent(
    relay_store: SqlRelayStore, vault_id: str, device_id: str
) -> None:
    relay_store.add_challenge(b"c1", VAULT, "d1", NOW + 1000)
    assert not relay_store.take_challenge(b"c1", vault_id, device_id, NOW)
    # "every later call is false": a challenge shown by the wrong party is gone.
    assert not relay_store.take_challenge(b"c1", VAULT, "d1", NOW)


# -- devices and tokens ----------------------------------------------------------------


def test_admitted_devices_are_listed_first_seen_first(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    assert relay_store.devices(VAULT) == []
    assert relay_store.admit_device(VAULT, "d2", NOW)
    assert relay_store.admit_device(VAULT, "d1", NOW + 10)
    assert relay_store.admit_device(VAULT, "d2", NOW + 20)
    devices = relay_store.devices(VAULT)
    assert [d.device_id for d in devices] == ["d2", "d1"]
    d2 = devices[0]
    assert (d2.first_seen, d2.last_seen, d2.cursor, d2.removed_at) == (NOW, NOW + 20, 0, None)
    assert relay_store.devices(OTHER) == []


def test_note_cursor_is_reported_per_device(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    relay_store.admit_device(VAULT, "d1", NOW)
    relay_store.admit_device(VAULT, "d2", NOW)
    _push_many(relay_store, "d1", range(1, 6))
    relay_store.note_cursor(VAULT, "d1", 4, NOW + 7)
    by_id = {d.device_id: d for d in relay_store.devices(VAULT)}
    assert (by_id["d1"].cursor, by_id["d1"].last_seen) == (4, NOW + 7)
    assert by_id["d2"].cursor == 0


def test_a_removed_device_cannot_come_back(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    relay_store.admit_device(VAULT, "d1", NOW)
    assert relay_store.remove_device(VAULT, "d1", NOW + 5)
    assert not relay_store.admit_device(VAULT, "d1", NOW + 10)
    assert relay_store.remove_device(VAULT, "d1", NOW + 20)
    (d1,) = relay_store.devices(VAULT)
    assert d1.removed_at == NOW + 5


def test_removing_an_unknown_device_is_false(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    relay_store.admit_device(VAULT, "d1", NOW)
    assert not relay_store.remove_device(VAULT, "d9", NOW)
    assert not relay_store.remove_device(OTHER, "d1", NOW)
    assert [d.removed_at for d in relay_store.devices(VAULT)] == [None]


def test_a_token_names_its_vault_and_device_until_it_expires(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    relay_store.admit_device(VAULT, "d1", NOW)
    relay_store.add_token(b"t1", VAULT, "d1", NOW + 1000)
    assert relay_store.token_owner(b"t1", NOW) == (VAULT, "d1")
    assert relay_store.token_owner(b"t1", NOW + 999) == (VAULT, "d1")
    assert relay_store.token_owner(b"t1", NOW + 1000) is None
    assert relay_store.token_owner(b"unknown", NOW) is None


def test_a_removed_devices_tokens_stop_at_once(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    _vault(relay_store, OTHER)
    for vault_id in (VAULT, OTHER):
        relay_store.admit_device(vault_id, "d1", NOW)
    relay_store.add_token(b"t1", VAULT, "d1", NOW + 1000)
    relay_store.add_token(b"t2", VAULT, "d1", NOW + 1000)
    relay_store.add_token(b"t3", OTHER, "d1", NOW + 1000)
    relay_store.remove_device(VAULT, "d1", NOW)
    assert relay_store.token_owner(b"t1", NOW) is None
    assert relay_store.token_owner(b"t2", NOW) is None
    # The same device id in another vault is another device.
    assert relay_store.token_owner(b"t3", NOW) == (OTHER, "d1")


# -- pushes and pulls ------------------------------------------------------------------


def test_cursors_run_from_one_without_gaps(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    cursors = [relay_store.push(VAULT, f"d{n % 3}", n, 3, b"x", NOW) for n in range(1, 11)]
    assert cursors == list(range(1, 11))
    vault = relay_store.vault(VAULT)
    assert vault is not None
    assert vault.last_cursor == 10


def test_a_repeated_push_returns_the_first_cursor_and_stores_nothing(
    relay_store: SqlRelayStore,
) -> None:
    _vault(relay_store)
    assert relay_store.push(VAULT, "d1", 1, 3, b"first", NOW) == 1
    assert relay_store.push(VAULT, "d2", 1, 3, b"other device", NOW) == 2
    assert relay_store.push(VAULT, "d1", 1, 4, b"second", NOW + 5) == 1
    assert relay_store.push(VAULT, "d1", 2, 3, b"next", NOW) == 3
    assert [
        (b.cursor, b.device_id, b.number, b.schema_version, b.body) for b in _all(relay_store)
    ] == [
        (1, "d1", 1, 3, b"first"),
        (2, "d2", 1, 3, b"other device"),
        (3, "d1", 2, 3, b"next"),
    ]
    vault = relay_store.vault(VAULT)
    assert vault is not None
    assert vault.last_cursor == 3


def test_vaults_have_their_own_cursors(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    _vault(relay_store, OTHER)
    assert relay_store.push(VAULT, "d1", 1, 3, b"a", NOW) == 1
    assert relay_store.push(OTHER, "d1", 1, 3, b"b", NOW) == 1
    assert relay_store.push(VAULT, "d1", 2, 3, b"c", NOW) == 2
    assert [b.body for b in _all(relay_store, OTHER)] == [b"b"]


def test_a_push_to_an_unknown_vault_is_refused(relay_store: SqlRelayStore) -> None:
    with pytest.raises(ValidationError, match="no-such-vault"):
        relay_store.push("no-such-vault", "d1", 1, 3, b"x", NOW)
    assert relay_store.pull("no-such-vault", 0, 10) == []
    assert relay_store.vault("no-such-vault") is None
    assert relay_store.stats().batches == 0


def test_pulls_page_after_a_cursor(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    _vault(relay_store, OTHER)
    _push_many(relay_store, "d1", range(1, 8))
    _push_many(relay_store, "d1", range(1, 3), OTHER)
    assert [b.cursor for b in relay_store.pull(VAULT, 0, 3)] == [1, 2, 3]
    assert [b.cursor for b in relay_store.pull(VAULT, 3, 3)] == [4, 5, 6]
    assert [b.cursor for b in relay_store.pull(VAULT, 6, 3)] == [7]
    assert relay_store.pull(VAULT, 7, 3) == []
    assert relay_store.pull(VAULT, 100, 3) == []
    (fifth,) = relay_store.pull(VAULT, 4, 1)
    assert fifth == StoredBatch(5, "d1", 5, 3, b"d1/5")


# -- snapshots -------------------------------------------------------------------------


def test_a_snapshot_is_visible_only_once_complete(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    _push_many(relay_store, "d1", range(1, 5))
    put = relay_store.put_snapshot_part
    assert put(VAULT, "s1", "d1", 3, 7, 0, False, b"p0", NOW) is None
    assert put(VAULT, "s1", "d1", 3, 7, 1, False, b"part1", NOW + 1) is None
    assert relay_store.latest_snapshot(VAULT) is None
    assert relay_store.snapshot_part(VAULT, "s1", 0) is None
    done = put(VAULT, "s1", "d1", 3, 7, 2, True, b"p2", NOW + 2)
    assert done is not None
    assert (done.snapshot_id, done.device_id, done.cursor, done.schema_version) == (
        "s1",
        "d1",
        3,
        7,
    )
    assert (done.parts, done.size, done.created_at) == (3, 9, NOW + 2)  # completed
    assert relay_store.latest_snapshot(VAULT) == done
    parts = [relay_store.snapshot_part(VAULT, "s1", p) for p in range(3)]
    assert parts == [b"p0", b"part1", b"p2"]
    assert relay_store.snapshot_part(VAULT, "s1", 3) is None
    assert relay_store.snapshot_part(OTHER, "s1", 0) is None
    assert relay_store.stats().snapshot_bytes == 9


def test_the_latest_snapshot_replaces_the_older_one(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    _push_many(relay_store, "d1", range(1, 6))
    _snapshot(relay_store, 2, sid="old")
    _snapshot(relay_store, 4, sid="new", device="d2")
    latest = relay_store.latest_snapshot(VAULT)
    assert latest is not None
    assert (latest.snapshot_id, latest.cursor) == ("new", 4)
    assert relay_store.snapshot_part(VAULT, "old", 0) is None
    assert relay_store.snapshot_part(VAULT, "new", 1) == b"new/1"
    assert relay_store.stats().snapshot_bytes == len(b"new/0") + len(b"new/1")


def _refused(store: SqlRelayStore, *args: object) -> None:
    with pytest.raises(ValidationError):
        store.put_snapshot_part(*args)  # type: ignore[arg-type]


def test_snapshot_parts_out_of_order_are_refused_and_not_stored(
    relay_store: SqlRelayStore,
) -> None:
    _vault(relay_store)
    _push_many(relay_store, "d1", range(1, 4))
    _refused(relay_store, VAULT, "s1", "d1", 2, 3, 1, False, b"no part 0", NOW)
    relay_store.put_snapshot_part(VAULT, "s1", "d1", 2, 3, 0, False, b"a", NOW)
    _refused(relay_store, VAULT, "s1", "d1", 2, 3, 2, True, b"skips 1", NOW)
    _refused(relay_store, VAULT, "s1", "d1", 2, 3, 0, True, b"part 0 again", NOW)
    # The refusals left the upload as it was: part 1 is still the one expected.
    done = relay_store.put_snapshot_part(VAULT, "s1", "d1", 2, 3, 1, True, b"bc", NOW)
    assert done is not None
    assert (done.parts, done.size) == (2, 3)
    assert relay_store.snapshot_part(VAULT, "s1", 1) == b"bc"


def test_snapshot_parts_of_another_device_or_cursor_are_refused(
    relay_store: SqlRelayStore,
) -> None:
    _vault(relay_store)
    _push_many(relay_store, "d1", range(1, 4))
    relay_store.put_snapshot_part(VAULT, "s1", "d1", 2, 3, 0, False, b"a", NOW)
    _refused(relay_store, VAULT, "s1", "d2", 2, 3, 1, True, b"intruder", NOW)
    _refused(relay_store, VAULT, "s1", "d1", 3, 3, 1, True, b"moved cursor", NOW)
    done = relay_store.put_snapshot_part(VAULT, "s1", "d1", 2, 3, 1, True, b"b", NOW)
    assert done is not None
    assert (done.device_id, done.parts, done.size) == ("d1", 2, 2)
    # A complete snapshot takes no more parts.
    _refused(relay_store, VAULT, "s1", "d1", 2, 3, 2, True, b"late", NOW)
    assert relay_store.snapshot_part(VAULT, "s1", 2) is None


def test_a_snapshot_beyond_the_vaults_last_cursor_is_refused(relay_store: SqlRelayStore) -> None:
    _refused(relay_store, "no-such-vault", "s1", "d1", 0, 3, 0, True, b"x", NOW)
    _vault(relay_store)
    _push_many(relay_store, "d1", range(1, 3))
    _refused(relay_store, VAULT, "s1", "d1", 3, 3, 0, True, b"x", NOW)
    _refused(relay_store, VAULT, "s1", "d1", -1, 3, 0, True, b"x", NOW)
    assert relay_store.latest_snapshot(VAULT) is None
    assert relay_store.stats().snapshot_bytes == 0
    # Nothing of the refused upload is left: the same id starts cleanly at cursor 2.
    done = relay_store.put_snapshot_part(VAULT, "s1", "d1", 2, 3, 0, True, b"ok", NOW)
    assert done is not None
    assert (done.cursor, done.parts, done.size) == (2, 1, 2)


# -- sweeping --------------------------------------------------------------------------


def test_sweep_drops_expired_credentials(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    relay_store.admit_device(VAULT, "d1", NOW)
    relay_store.add_challenge(b"old", VAULT, "d1", NOW)
    relay_store.add_challenge(b"fresh", VAULT, "d1", NOW + 1000)
    relay_store.add_token(b"old", VAULT, "d1", NOW - 1)
    relay_store.add_token(b"fresh", VAULT, "d1", NOW + 1000)
    assert relay_store.sweep(NOW) == 2
    assert relay_store.sweep(NOW) == 0
    assert relay_store.take_challenge(b"fresh", VAULT, "d1", NOW)
    assert relay_store.token_owner(b"fresh", NOW) == (VAULT, "d1")


def test_unfinished_snapshots_are_swept_after_a_day(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    _push_many(relay_store, "d1", range(1, 3))
    put = relay_store.put_snapshot_part
    put(VAULT, "stale", "d1", 1, 3, 0, False, b"s", NOW - DAY_MS - 1)
    put(VAULT, "recent", "d1", 2, 3, 0, False, b"r", NOW - DAY_MS + 1000)
    put(VAULT, "done", "d1", 2, 3, 0, True, b"d", NOW - 2 * DAY_MS)
    assert relay_store.sweep(NOW) == 1
    _refused(relay_store, VAULT, "stale", "d1", 1, 3, 1, True, b"s", NOW)
    assert put(VAULT, "recent", "d1", 2, 3, 1, True, b"r", NOW) is not None
    # "recent" completed with the same cursor as "done", and is newer: it is the latest.
    latest = relay_store.latest_snapshot(VAULT)
    assert latest is not None
    assert latest.snapshot_id == "recent"


# -- compaction ------------------------------------------------------------------------


def _two_devices_at(store: SqlRelayStore, first: int, second: int) -> None:
    _vault(store)
    for device in ("d1", "d2"):
        store.admit_device(VAULT, device, NOW)
    _push_many(store, "d1", range(1, 11))
    store.note_cursor(VAULT, "d1", first, NOW)
    store.note_cursor(VAULT, "d2", second, NOW)


def test_nothing_is_compacted_without_a_snapshot(relay_store: SqlRelayStore) -> None:
    _two_devices_at(relay_store, 10, 10)
    assert relay_store.compact(VAULT, NOW) == 0
    assert len(_all(relay_store)) == 10
    vault = relay_store.vault(VAULT)
    assert vault is not None
    assert vault.floor == 0


@pytest.mark.parametrize(
    ("first", "second", "snapshot_at", "floor"),
    [(8, 5, 7, 5), (9, 9, 7, 7), (10, 0, 10, 0)],
)
def test_compaction_stops_at_the_snapshot_and_the_slowest_device(
    relay_store: SqlRelayStore, first: int, second: int, snapshot_at: int, floor: int
) -> None:
    _two_devices_at(relay_store, first, second)
    _snapshot(relay_store, snapshot_at)
    assert relay_store.compact(VAULT, NOW) == floor
    assert [b.cursor for b in _all(relay_store)] == list(range(floor + 1, 11))
    assert [b.cursor for b in relay_store.pull(VAULT, floor, 2)] == [floor + 1, floor + 2]
    vault = relay_store.vault(VAULT)
    assert vault is not None
    assert (vault.floor, vault.last_cursor) == (floor, 10)
    assert relay_store.compact(VAULT, NOW) == 0


def test_compaction_moves_on_as_devices_pull(relay_store: SqlRelayStore) -> None:
    _two_devices_at(relay_store, 8, 5)
    _snapshot(relay_store, 7)
    assert relay_store.compact(VAULT, NOW) == 5
    relay_store.note_cursor(VAULT, "d2", 9, NOW)
    assert relay_store.compact(VAULT, NOW) == 2
    assert [b.cursor for b in _all(relay_store)] == [8, 9, 10]
    vault = relay_store.vault(VAULT)
    assert vault is not None
    assert vault.floor == 7


def test_a_removed_device_does_not_hold_compaction_back(relay_store: SqlRelayStore) -> None:
    _two_devices_at(relay_store, 6, 6)
    relay_store.admit_device(VAULT, "d3", NOW)  # never pulls
    _snapshot(relay_store, 6)
    assert relay_store.compact(VAULT, NOW) == 0
    relay_store.remove_device(VAULT, "d3", NOW)
    assert relay_store.compact(VAULT, NOW) == 6
    assert [b.cursor for b in _all(relay_store)] == [7, 8, 9, 10]


def test_a_push_repeated_after_compaction_is_still_recognised(
    relay_store: SqlRelayStore,
) -> None:
    _two_devices_at(relay_store, 10, 10)
    _snapshot(relay_store, 10)
    assert relay_store.compact(VAULT, NOW) == 10
    assert relay_store.push(VAULT, "d1", 3, 3, b"again", NOW + 1) == 3
    vault = relay_store.vault(VAULT)
    assert vault is not None
    assert vault.last_cursor == 10
    assert _all(relay_store) == []
    assert relay_store.push(VAULT, "d1", 11, 3, b"new", NOW + 1) == 11


def test_a_compacted_push_is_forgotten_after_the_push_memory(
    relay_store: SqlRelayStore,
) -> None:
    _two_devices_at(relay_store, 10, 10)
    _snapshot(relay_store, 10)
    later = NOW + PUSH_MEMORY_MS + 1
    assert relay_store.compact(VAULT, later) == 10
    # Older than PUSH_MEMORY_MS, the repeat is stored again, with a new cursor.
    assert relay_store.push(VAULT, "d1", 3, 3, b"again", later) == 11
    assert [(b.cursor, b.number) for b in _all(relay_store)] == [(11, 3)]


# -- totals ----------------------------------------------------------------------------


def test_stats_count_what_is_kept(relay_store: SqlRelayStore) -> None:
    empty = relay_store.stats()
    assert (empty.vaults, empty.devices, empty.batches, empty.batch_bytes) == (0, 0, 0, 0)
    assert empty.snapshot_bytes == 0
    _two_devices_at(relay_store, 4, 4)
    _vault(relay_store, OTHER)
    relay_store.admit_device(OTHER, "d9", NOW)
    relay_store.push(OTHER, "d9", 1, 3, b"12345", NOW)
    _snapshot(relay_store, 4)
    sizes = sum(len(f"d1/{n}") for n in range(1, 11)) + 5
    stats = relay_store.stats()
    assert (stats.vaults, stats.devices, stats.batches) == (2, 3, 11)
    assert (stats.batch_bytes, stats.snapshot_bytes) == (sizes, len(b"s1/0s1/1"))
    relay_store.compact(VAULT, NOW)
    after = relay_store.stats()
    assert after.batches == 7
    assert after.batch_bytes == sizes - sum(len(f"d1/{n}") for n in range(1, 5))


# -- a random history of pushes and pulls --------------------------------------------

_pushes = st.tuples(st.just("push"), st.sampled_from(["d1", "d2", "d3"]), st.integers(1, 6))
_pulls = st.tuples(st.just("pull"), st.integers(0, 25), st.integers(1, 7))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(st.one_of(_pushes, _pulls), max_size=40))
def test_random_pushes_and_pulls_keep_one_gapless_sequence(
    relay_store: SqlRelayStore, steps: list[tuple[str, Any, int]]
) -> None:
    vault_id = f"vault-{uuid.uuid4().hex}"  # one store serves every example
    relay_store.create_vault(vault_id, KEY, NOW)
    given_cursor: dict[tuple[str, int], int] = {}
    for kind, first, second in steps:
        if kind == "push":
            key = (str(first), second)
            cursor = relay_store.push(vault_id, key[0], key[1], 3, repr(key).encode(), NOW)
            assert cursor == given_cursor.setdefault(key, len(given_cursor) + 1)
        else:
            after = int(first)
            page = relay_store.pull(vault_id, after, second)
            wanted = [c for c in sorted(given_cursor.values()) if c > after][:second]
            assert [b.cursor for b in page] == wanted
    pulled = relay_store.pull(vault_id, 0, 1000)
    assert [b.cursor for b in pulled] == list(range(1, len(given_cursor) + 1))
    assert {(b.device_id, b.number): b.cursor for b in pulled} == given_cursor
    assert all(b.body == repr((b.device_id, b.number)).encode() for b in pulled)


# -- stored files' chunks ------------------------------------------------------------------

NAME_A, NAME_B, NAME_C = "a" * 64, "b" * 64, "c" * 64
TAG_1, TAG_2 = "1" * 32, "2" * 32


def test_chunks_are_kept_once_per_vault_and_dropped_by_owner(relay_store: SqlRelayStore) -> None:
    _vault(relay_store)
    _vault(relay_store, OTHER)
    assert relay_store.missing_blobs(VAULT, [NAME_A, NAME_B]) == [NAME_A, NAME_B]
    assert relay_store.missing_blobs(VAULT, []) == []
    relay_store.put_blob(VAULT, NAME_A, TAG_1, b"sealed a", NOW)
    relay_store.put_blob(VAULT, NAME_A, TAG_1, b"another copy", NOW)  # kept as first sent
    relay_store.put_blob(VAULT, NAME_B, TAG_2, b"sealed b", NOW)
    relay_store.put_blob(VAULT, NAME_C, TAG_1, b"sealed c", NOW)
    assert relay_store.blob(VAULT, NAME_A) == b"sealed a"
    assert relay_store.blob(OTHER, NAME_A) is None  # vaults do not share chunks
    assert relay_store.missing_blobs(VAULT, [NAME_B, "d" * 64]) == ["d" * 64]
    assert relay_store.stats().blob_bytes == len(b"sealed a" + b"sealed b" + b"sealed c")
    assert relay_store.forget_blobs(VAULT, TAG_1) == 2
    assert relay_store.forget_blobs(VAULT, TAG_1) == 0
    assert relay_store.missing_blobs(VAULT, [NAME_A, NAME_B, NAME_C]) == [NAME_A, NAME_C]
