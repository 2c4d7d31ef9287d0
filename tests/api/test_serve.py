"""``mangostore serve``: loopback or a unix socket, never another address by accident."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import mangostore
from mangostore.api.run import check_host, is_loopback, loopback_names, unix_socket
from mangostore.cli import cli
from mangostore.errors import ConfigurationError

#: Seconds a server gets to answer its health check after starting.
START_TIMEOUT_S = 60.0


@pytest.fixture
def plain_path(tmp_path: Path) -> Path:
    """An unencrypted database file with one user, ``ann``."""
    path = tmp_path / "api.db"
    with mangostore.create(path, encrypted=False).db as db:
        db.users.create(username="ann")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_addresses_are_accepted(host: str) -> None:
    assert is_loopback(host)
    check_host(host, allow_remote=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "example.org"])
def test_other_addresses_need_the_explicit_flag(host: str) -> None:
    with pytest.raises(ConfigurationError, match="--allow-remote"):
        check_host(host, allow_remote=False)
    check_host(host, allow_remote=True)


def test_loopback_names_are_those_a_local_client_sends() -> None:
    assert loopback_names("127.0.0.1", 8766) == (
        "127.0.0.1",
        "localhost",
        "[::1]",
        "127.0.0.1:8766",
        "localhost:8766",
        "[::1]:8766",
    )
    assert loopback_names("::1", 80)[0] == "[::1]"


def test_the_command_refuses_a_network_address(plain_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", str(plain_path), "--plain", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "not a loopback address" in result.output


def test_socket_and_host_together_are_a_usage_error(plain_path: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["serve", str(plain_path), "--plain", "--socket", str(tmp_path / "s"), "--port", "9"],
    )
    assert result.exit_code == 2


def test_a_unix_socket_is_private_and_removed_after(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    with unix_socket(path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.exists()
    path.write_text("not a socket")
    with pytest.raises(ConfigurationError, match="not a socket"), unix_socket(path):
        pass


def test_a_stale_socket_is_replaced_and_a_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    with unix_socket(path):
        pass
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(path))
    live.listen()
    try:
        with pytest.raises(ConfigurationError, match="already listens"), unix_socket(path):
            pass
    finally:
        live.close()


@pytest.fixture
def serving(plain_path: Path, tmp_path: Path) -> Iterator[tuple[Path, Callable[..., None]]]:
    """Start ``mangostore serve`` with the arguments a test gives; stop it after."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> None:
        command = [
            sys.executable,
            "-c",
            "from mangostore.cli import main; main()",
            "serve",
            str(plain_path),
            "--plain",
            "--log-level",
            "warning",
            *extra,
        ]
        with open(tmp_path / "serve.log", "ab") as log:  # the child keeps its own copy
            started.append(subprocess.Popen(command, stdout=log, stderr=log))

    yield plain_path, start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait(client: httpx.Client) -> httpx.Response:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            return client.get("/v1/health")
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not answer its health check in time")


def _wait_for_socket(path: Path) -> None:
    """Wait until a server accepts connections on ``path`` (probed with a socket that is
    always closed: httpx's own unix transport leaks one when a connect fails)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
                return
            except OSError:
                pass
        time.sleep(0.1)
    raise AssertionError("the server did not listen on its socket in time")


def _token(path: Path) -> str:
    with mangostore.open(path, encrypted=False) as db:
        ann = db.users.get_by_username("ann")
        assert ann is not None
        db.access.grant(ann.id, "project", "*", "read")
        return db.sessions.issue(ann.id).token


def test_serving_on_a_loopback_port(serving: tuple[Path, Callable[..., None]]) -> None:
    path, start = serving
    token = _token(path)
    port = _free_port()
    start("--port", str(port))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        assert _wait(client).json()["status"] == "ok"
        rebound = client.get("/v1/health", headers={"Host": f"rebound.example.org:{port}"})
        assert rebound.status_code == 421
        answer = client.get("/v1/projects", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        assert answer.json()["items"] == []


def test_serving_on_a_unix_socket(
    serving: tuple[Path, Callable[..., None]], tmp_path: Path
) -> None:
    path, start = serving
    token = _token(path)
    sock = tmp_path / "api.sock"
    start("--socket", str(sock))
    _wait_for_socket(sock)
    transport = httpx.HTTPTransport(uds=str(sock))
    with httpx.Client(transport=transport, base_url="http://mangostore", timeout=5) as client:
        assert _wait(client).status_code == 200
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["user"]["username"] == "ann"
