"""Stored files through ``mangostore serve-sync`` in a process of its own: a file put
on one device opens on a device that joined later, its chunks fetched from the
server; the server's store holds none of its plaintext; an erasure empties the server
of the user's chunks; the blob routes refuse bad names."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
from tests.conftest import FAST_KDF, PASSPHRASE
from tests.sync.server.servers import ServerProcess

import mangostore
from mangostore import Settings
from mangostore.sync.joining import join

SETTINGS = Settings(kdf=FAST_KDF, backup_before_migrate=False)
CANARY = b"canary-voice-sample-8c1e " * 200


def test_a_file_reaches_a_joined_device_through_the_server(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(600_000) + CANARY
    server = ServerProcess("sqlite://" + str(tmp_path / "relay.sqlite"), log=tmp_path / "s.log")
    server.start()
    try:
        first, _ = mangostore.create(
            tmp_path / "laptop.db", passphrase=PASSPHRASE, settings=SETTINGS
        )
        with first:
            alice = first.users.create(username="alice").id
            stored = first.files.put(alice, data, name="take.wav")
            profile = first.voice_profiles.create(
                user_id=alice, name="p", training_file_id=stored.id
            )
            url = first.sync.attach(server.url)
            first.sync.sync()
            second, _ = join(url, tmp_path / "desktop.db", passphrase=PASSPHRASE, settings=SETTINGS)
            with second:
                second.sync.sync()
                assert second.voice_profiles.get(profile.id).training_file_id == stored.id
                assert second.files.read(stored.id) == data  # fetched from the server
                names = [str(r[0]) for r in second.query("SELECT chunk FROM file_parts")]
            held = b"".join(p.read_bytes() for p in tmp_path.glob("relay.sqlite*"))
            assert len(held) > len(data) // 2
            assert CANARY[:50] not in held

            vault = first.sync.vault_id
            with first.sync.server(server.url) as transport:
                assert transport.missing_blobs(vault, names) == []
                first.privacy.erase_user(alice)
                first.sync.sync()
                assert sorted(transport.missing_blobs(vault, names)) == sorted(names)
            bad = httpx.get(f"{server.url}/v1/vaults/{vault}/blobs/not-a-name")
            assert bad.status_code in (401, 422)
    finally:
        server.stop()
