"""Two ``mangostore serve-sync`` processes on one store serve one vault at once.

Eight devices of one vault, attached through the two servers in turn, write and sync
from eight threads at once, in small batches, so that pushes through both processes
interleave. Read back from the store directly, the vault's cursors run 1..n with no
gap and no repeat, every (device, batch number) is there once and no device's batch is
missing; after two more syncs every device holds the same rows, all of them. Once on a
PostgreSQL schema (the deployment behind a load balancer) and once on one SQLite file.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import httpx
from tests.conftest import FAST_KDF, PASSPHRASE
from tests.sync.server.conftest import StoreTarget
from tests.sync.server.servers import ServerProcess, store_url
from tests.sync.test_convergence import logical_content

import mangostore
from mangostore import Settings
from mangostore.sync.server.store import StoredBatch

SETTINGS = Settings(kdf=FAST_KDF, backup_before_migrate=False, monitor_queries=False)
HTTP_OPTIONS: dict[str, Any] = {"retries": 6, "backoff_s": 0.05, "timeout": 30.0}
DEVICES = 8
#: Rows each device writes (a user, then projects), syncing after every ``EVERY``.
ROWS = 20
EVERY = 2
#: Seconds a device thread may take before the test gives up on it.
THREAD_TIMEOUT_S = 240.0


def make_devices(folder: Path, urls: list[str]) -> list[mangostore.Database]:
    """A first device and ``DEVICES - 1`` more of its vault, each attached to the
    server through ``urls`` in turn."""
    first, _ = mangostore.create(folder / "device-0.db", passphrase=PASSPHRASE, settings=SETTINGS)
    devices = [first]
    for i in range(1, DEVICES):
        other, _ = first.sync.new_device(folder / f"device-{i}.db", PASSPHRASE, settings=SETTINGS)
        devices.append(other)
    for i, db in enumerate(devices):
        join_url = db.sync.attach(urls[i % len(urls)], **HTTP_OPTIONS)
        assert join_url.endswith(first.sync.vault_id)
    return devices


def write_and_sync(db: mangostore.Database, index: int, start: threading.Barrier) -> None:
    """One device's work: ``ROWS`` rows, a sync after every ``EVERY`` of them."""
    start.wait()
    user = db.users.create(username=f"user{index}", email=f"user{index}@example.org")
    for k in range(1, ROWS):
        db.projects.create(user_id=user.id, name=f"project {index}-{k}", path=f"/d{index}/p{k}")
        if k % EVERY == 0:
            db.sync.sync()
    db.sync.sync()


def stored_batches(target: StoreTarget, vault_id: str) -> tuple[int, list[StoredBatch]]:
    """The vault's last cursor and every batch it keeps, read from the store itself."""
    store = target.open()
    try:
        vault = store.vault(vault_id)
        assert vault is not None
        assert vault.floor == 0, "nothing may be compacted away before the batches are counted"
        batches: list[StoredBatch] = []
        while page := store.pull(vault_id, batches[-1].cursor if batches else 0, 500):
            batches.extend(page)
        return vault.last_cursor, batches
    finally:
        store.close()


def pushed_bytes(server: ServerProcess) -> float:
    """The batch bytes one server process stored, from its metrics."""
    for line in httpx.get(server.url + "/metrics", timeout=10.0).text.splitlines():
        if line.startswith("mangostore_sync_pushed_bytes_total "):
            return float(line.split()[1])
    raise AssertionError("the server's metrics have no pushed bytes")


def test_two_server_processes_serve_one_vault(relay_target: StoreTarget, tmp_path: Path) -> None:
    servers = [
        ServerProcess(store_url(relay_target), log=tmp_path / f"server-{i}.log") for i in range(2)
    ]
    with contextlib.ExitStack() as running:
        for server in servers:
            server.start()
            running.callback(server.stop)
        devices = make_devices(tmp_path, [s.url for s in servers])
        for db in devices:
            running.callback(db.close)

        start = threading.Barrier(DEVICES)
        failures: list[BaseException] = []

        def run(db: mangostore.Database, index: int) -> None:
            try:
                write_and_sync(db, index, start)
            except BaseException as exc:  # reported by the test's thread
                failures.append(exc)
                start.abort()

        threads = [
            threading.Thread(target=run, args=(db, i), name=f"device-{i}")
            for i, db in enumerate(devices)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(THREAD_TIMEOUT_S)
        assert not any(t.is_alive() for t in threads), "a device's sync never finished"
        if failures:
            raise failures[0]

        # Both processes took pushes: the vault was served by the two at once.
        assert all(pushed_bytes(server) > 0 for server in servers)

        vault_id = devices[0].sync.vault_id
        last, batches = stored_batches(relay_target, vault_id)
        # No cursor given twice, none skipped, none lost.
        assert [b.cursor for b in batches] == list(range(1, last + 1))
        sent = [(b.device_id, b.number) for b in batches]
        assert len(set(sent)) == len(sent), "a batch was stored twice"
        for db in devices:
            made = int(db.query("SELECT batches_made FROM sync_device")[0][0])
            numbers = sorted(n for d, n in sent if d == db.sync.device_id)
            assert numbers == list(range(1, made + 1)), f"device {db.sync.device_id} lost batches"
        assert len(batches) >= DEVICES * (ROWS // EVERY), "fewer pushes than the test means"

        for _round in range(2):
            for db in devices:
                db.sync.sync()
        contents = [logical_content(db) for db in devices]
        for i, content in enumerate(contents[1:], start=1):
            assert content == contents[0], f"device {i} differs from device 0"
        assert len(contents[0]["users"]) == DEVICES
        assert len(contents[0]["projects"]) == DEVICES * (ROWS - 1)
        assert all(db.sync.status().pending_changes == 0 for db in devices)
