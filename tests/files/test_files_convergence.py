"""Stored files converge across devices: a Hypothesis state machine drives three
devices of one vault through puts of files that share chunks, deletions, voice
profiles that own files, attachments, an erasure and syncs in any order.

After every convergence (sync every device until nothing moves):

* every device lists the same files, and every one reads back, on every device, as
  the bytes that were put (fetched from the relay where a device never held them);
* a file whose owning row went is gone everywhere, and a file deleted anywhere is;
* after a sweep no device keeps a chunk file that no file uses, and ``check()``
  finds nothing damaged;
* the relay holds none of an erased user's chunks, nor any plaintext.
"""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.errors import NotFoundError
from mangostore.sync import MemoryRelay

pytestmark = pytest.mark.slow

SETTINGS = Settings(kdf=FAST_KDF)
#: Contents put: parts of one pseudo-random text, so files share chunks.
BASE = random.Random(7).randbytes(400_000)
CONTENTS = [BASE, BASE[:150_000], BASE[100_000:] + b"edited", b"small file", b""]
MARK = b"plaintext-mark-"


class FilesOnDevices(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.relay = MemoryRelay()
        self.devices: list[mangostore.Database] = []
        self.users: dict[str, str] = {}
        self.expected: dict[str, bytes] = {}
        self.owner: dict[str, str] = {}
        self.profiles: dict[str, str] = {}  # profile id -> file id
        self.erased: set[str] = set()
        self.erased_chunks: set[str] = set()

    @initialize()
    def make_devices(self) -> None:
        first, _ = mangostore.create(":memory:", passphrase=PASSPHRASE, settings=SETTINGS)
        first.sync.enable(self.relay)
        self.devices = [first]
        for _ in range(2):
            other, _ = first.sync.new_device(":memory:", PASSPHRASE, settings=SETTINGS)
            other.sync.connect(self.relay)
            self.devices.append(other)
        for name in ("ann", "bob"):
            self.users[name] = first.users.create(username=name).id
        self.converge()

    def teardown(self) -> None:
        try:
            if self.devices:
                self.converge()  # every run ends converged, whatever its last step
        finally:
            for db in self.devices:
                db.close()

    def _visible(self, device: int, file_id: str) -> bool:
        try:
            self.devices[device].files.get(file_id)
        except NotFoundError:
            return False
        return True

    @rule(
        device=st.integers(0, 2),
        user=st.sampled_from(["ann", "bob"]),
        content=st.integers(0, len(CONTENTS) - 1),
    )
    def put(self, device: int, user: str, content: int) -> None:
        if user in self.erased:
            return
        data = CONTENTS[content] + MARK + str(len(self.expected)).encode()
        stored = self.devices[device].files.put(self.users[user], data)
        self.expected[stored.id] = data
        self.owner[stored.id] = user

    @precondition(lambda self: self.expected)
    @rule(device=st.integers(0, 2), pick=st.randoms(use_true_random=False))
    def delete(self, device: int, pick: random.Random) -> None:
        file_id = pick.choice(sorted(self.expected))
        if self._visible(device, file_id):
            self.devices[device].files.delete(file_id)

    @precondition(lambda self: self.expected)
    @rule(device=st.integers(0, 2), pick=st.randoms(use_true_random=False))
    def give_to_a_profile(self, device: int, pick: random.Random) -> None:
        file_id = pick.choice(sorted(self.expected))
        db = self.devices[device]
        if not self._visible(device, file_id):
            return
        user_id = db.files.get(file_id).user_id
        profile = db.voice_profiles.create(user_id=user_id, name="p", training_file_id=file_id)
        self.profiles[profile.id] = file_id

    @precondition(lambda self: self.profiles)
    @rule(device=st.integers(0, 2), pick=st.randoms(use_true_random=False))
    def delete_a_profile(self, device: int, pick: random.Random) -> None:
        profile_id = pick.choice(sorted(self.profiles))
        with contextlib.suppress(NotFoundError):
            self.devices[device].voice_profiles.delete(profile_id)

    @precondition(lambda self: "bob" not in self.erased and "bob" in self.owner.values())
    @rule(device=st.integers(0, 2), sent_first=st.booleans())
    def erase_bob(self, device: int, sent_first: bool) -> None:
        if sent_first:  # bob's chunks reached the relay before the erasure
            for db in self.devices:
                db.sync.sync()
        for db in self.devices:  # every chunk name of bob's a device knows of
            self.erased_chunks |= {
                str(r[0])
                for r in db.query(
                    "SELECT p.chunk FROM file_parts p JOIN files f ON f.id = p.file_id "
                    "WHERE f.user_id = ?",
                    [self.users["bob"]],
                )
            }
        self.devices[device].privacy.erase_user(self.users["bob"])
        self.erased.add("bob")

    @rule(device=st.integers(0, 2))
    def sync(self, device: int) -> None:
        self.devices[device].sync.sync()

    @rule()
    def converge(self) -> None:
        for _ in range(4):
            for db in self.devices:
                db.sync.sync()
        listed = [
            sorted((f.id, f.digest) for user in self.users.values() for f in db.files.list(user))
            for db in self.devices
        ]
        assert listed[0] == listed[1] == listed[2]
        present = {file_id for file_id, _ in listed[0]}
        for file_id in present:
            assert self.owner[file_id] not in self.erased
            for db in self.devices:
                assert db.files.read(file_id) == self.expected[file_id]
        for file_id in self.profiles.values():
            if file_id in present:  # its profile may be gone while another row keeps it
                assert any(
                    db.voice_profiles.exists(training_file_id=file_id) for db in self.devices
                )
        for db in self.devices:
            db.files.sweep()
            report = db.files.check(verify=True, repair=True)
            assert report.ok, report
            assert report.sweep.chunks_removed == report.sweep.orphans_removed == 0
        held = self.relay.stored_bytes()
        assert MARK not in held
        vault = self.devices[0].sync.vault_id
        gone = sorted(self.erased_chunks)
        assert self.relay.missing_blobs(vault, gone) == gone

    @invariant()
    def no_broken_reference(self) -> None:
        for db in self.devices:
            assert db.query("PRAGMA foreign_key_check") == []


@pytest.mark.filterwarnings("ignore::mangostore.errors.RecoveryKeyWarning")
def test_stored_files_converge() -> None:
    run_state_machine_as_test(
        FilesOnDevices,
        settings=settings(
            max_examples=15,
            stateful_step_count=14,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
