"""Sync converges through a real sync server: the engine's property test over HTTP.

The state machine of :mod:`tests.sync.test_convergence` runs again, with every device
reaching ``mangostore serve-sync`` (a process of its own on loopback) through an
:class:`~mangostore.sync.http.HttpTransport`, once over the SQLite store and once over
PostgreSQL. The faults of the original still spoil pulls and lose push answers; the
rules added here restart the server, take one device off the network for a while (its
syncs fail with a transport error and it keeps its changes) and upload a snapshot, so
devices that start late or fall behind a compaction begin from it. The convergence
checks at every ``converge`` step and at the end of every run are the original's.

The template devices share one vault id, so every run gets a store of its own (a new
SQLite file, a new PostgreSQL schema) and a server over it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule, run_state_machine_as_test
from tests.conftest import FAST_KDF
from tests.sync.server.conftest import StoreTarget, pg_dsn, pg_schema
from tests.sync.server.servers import ServerProcess, store_url
from tests.sync.test_convergence import (
    DEVICES,
    HOUR_MS,
    Convergence,
    Template,
    UnreliableTransport,
    device_index,
    make_template,
)

from mangostore import Settings
from mangostore.errors import SyncTransportError
from mangostore.sync import MemoryRelay, Pulled
from mangostore.sync.batches import Batch
from mangostore.sync.http import HttpTransport

#: How the devices reach the server: a few quick retries ride over a restart.
HTTP_OPTIONS: dict[str, Any] = {"retries": 6, "backoff_s": 0.02, "timeout": 20.0}
#: Restarts of the server in one run (each costs a process start).
MAX_RESTARTS = 1


class ServerTransport(UnreliableTransport):
    """One device's way to the sync server, with the original's faults on pulls and
    push answers, and the server's snapshots passed through unspoilt.

    It is bound to the device's :class:`HttpTransport` once the device is open; taken
    offline, it talks to a port nothing listens on, as a device off the network would.
    """

    def __init__(self) -> None:
        super().__init__(MemoryRelay())
        self.online: HttpTransport | None = None
        self.current: HttpTransport | None = None

    def bind(self, http: HttpTransport) -> None:
        """Reach the server through ``http`` from now on."""
        self.online = self.current = http
        self.relay = http  # type: ignore[assignment]  # the relay the faults wrap

    def take_offline(self, dead: HttpTransport) -> None:
        """Reach nothing (``dead`` names a port nothing listens on) until :meth:`come_back`."""
        self.current = dead
        self.relay = dead  # type: ignore[assignment]

    def come_back(self) -> None:
        """Reach the server again."""
        assert self.online is not None
        if self.current is not None and self.current is not self.online:
            self.current.close()
        self.bind(self.online)

    def _http(self) -> HttpTransport:
        assert self.current is not None, "the transport is not bound to the server yet"
        return self.current

    def push(self, batch: Batch) -> int:
        self._http()
        return super().push(batch)

    def pull(self, vault_id: str, after: int, limit: int) -> list[Pulled]:
        self._http()
        return super().pull(vault_id, after, limit)

    def latest_snapshot(self) -> dict[str, Any] | None:
        return self._http().latest_snapshot()

    def snapshot_part(self, snapshot_id: str, part: int) -> bytes:
        return self._http().snapshot_part(snapshot_id, part)

    def put_snapshot_part(
        self,
        snapshot_id: str,
        part: int,
        *,
        cursor: int,
        schema_version: int,
        last: bool,
        body: bytes,
    ) -> bool:
        return self._http().put_snapshot_part(
            snapshot_id, part, cursor=cursor, schema_version=schema_version, last=last, body=body
        )

    def close(self) -> None:
        """Close the connections (the database closes its transport)."""
        for http in {id(t): t for t in (self.online, self.current) if t is not None}.values():
            http.close()


class ServerConvergence(Convergence):
    """Three devices, one sync server in its own process, unreliable pulls, skewed
    clocks, server restarts, a device off the network for a while, snapshots."""

    def __init__(
        self, template: list[Template], device_settings: Settings, store: str, log: Path
    ) -> None:
        super().__init__(template, device_settings)
        self.transports = [ServerTransport() for _ in range(DEVICES)]
        self.server_transports = self.transports
        self.server = ServerProcess(store, log=log)
        self.server.start()
        self.offline: int | None = None
        #: While a device is offline: a port bound and not listening, so that
        #: connecting to it is refused and no other server can take it meanwhile.
        self.nowhere: socket.socket | None = None
        self.restarts = 0

    @initialize(
        skews=st.lists(st.integers(-HOUR_MS, HOUR_MS), min_size=DEVICES - 1, max_size=DEVICES - 1)
    )
    def open_devices(self, skews: list[int]) -> None:
        super().open_devices(skews)
        url = self.server.url
        # The first device attaches the vault (its public key and escrow copy); the
        # others prove they belong to it when they first sync.
        join_url = self.dbs[0].sync.attach(url, **HTTP_OPTIONS)
        assert join_url.endswith(self.dbs[0].sync.vault_id)
        for db, transport in zip(self.dbs, self.server_transports, strict=True):
            transport.bind(db.sync.server(url, **HTTP_OPTIONS))
            db.sync.connect(transport)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            if self.nowhere is not None:
                self.nowhere.close()
            self.server.stop()

    # -- the server and the network ---------------------------------------------------------

    @precondition(lambda self: self.restarts < MAX_RESTARTS)
    @rule()
    def restart_server(self) -> None:
        self.server.restart()
        self.restarts += 1

    @precondition(lambda self: self.offline is None)
    @rule(device=device_index)
    def go_offline(self, device: int) -> None:
        self.nowhere = socket.socket()
        self.nowhere.bind(("127.0.0.1", 0))
        port = int(self.nowhere.getsockname()[1])
        dead = self.dbs[device].sync.server(f"http://127.0.0.1:{port}", retries=0)
        self.server_transports[device].take_offline(dead)
        self.offline = device

    @precondition(lambda self: self.offline is not None)
    @rule()
    def come_online(self) -> None:
        self._all_online()

    def _all_online(self) -> None:
        if self.offline is not None:
            self.server_transports[self.offline].come_back()
            self.offline = None
        if self.nowhere is not None:
            self.nowhere.close()
            self.nowhere = None

    @rule(device=device_index)
    def upload_snapshot(self, device: int) -> None:
        db = self.dbs[device]
        if device == self.offline:
            with pytest.raises(SyncTransportError, match="cannot be reached"):
                db.sync.upload_snapshot()
            return
        try:
            cursor = db.sync.upload_snapshot()
        except SyncTransportError:
            # It pushes the device's pending changes first: as in sync_device, the
            # only error the transport makes is a push whose answer was lost.
            assert "lost-answer" in self.server_transports[device].kinds
            return
        assert cursor is not None
        assert cursor <= db.sync.status().cursor

    def sync_device(self, device: int) -> None:
        if device != self.offline:
            super().sync_device(device)
            return
        db = self.dbs[device]
        before = db.sync.status().pending_changes
        with pytest.raises(SyncTransportError, match="cannot be reached"):
            db.sync.sync()
        assert db.sync.status().pending_changes == before, "an offline device lost changes"

    @rule()
    def converge(self) -> None:
        self._all_online()
        super().converge()
        # Every device went through the server: it knows all three.
        online = self.server_transports[0].online
        assert online is not None
        assert len(online.devices()) == DEVICES


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> list[Template]:
    """Three empty devices of one vault, made once for every run of the machine."""
    return make_template(tmp_path_factory.mktemp("server-template"), Settings(kdf=FAST_KDF))


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes an empty store for each run, once per engine (``--store`` URLs; the
    PostgreSQL schemas are dropped when the test ends)."""
    kind = str(request.param)
    if kind == "postgres":
        pg_dsn()  # skips without a PostgreSQL to test against
    numbers = itertools.count()
    with contextlib.ExitStack() as schemas:

        def make() -> str:
            if kind == "sqlite":
                path = tmp_path / f"relay-{next(numbers)}.sqlite"
                return store_url(StoreTarget("sqlite", str(path)))
            made = schemas.enter_context(pg_schema())
            return store_url(StoreTarget("postgres", made.dsn, made.schema))

        yield make


@pytest.mark.slow
def test_devices_converge_through_the_server(
    template: list[Template],
    fast_settings: Settings,
    fresh_stores: Callable[[], str],
    tmp_path: Path,
) -> None:
    quiet = dataclasses.replace(fast_settings, monitor_queries=False)
    runs = itertools.count()

    class Machine(ServerConvergence):
        def __init__(self) -> None:
            super().__init__(template, quiet, fresh_stores(), tmp_path / f"server-{next(runs)}.log")

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=6,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
