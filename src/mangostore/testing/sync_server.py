"""A sync server in a process of its own on loopback, for applications' tests (and
mangostore's own): :class:`SyncServerProcess` runs the real ``mangostore serve-sync``.

::

    with SyncServerProcess("sqlite:///tmp/relay.db") as server:
        db.sync.attach(server.url)

The system chooses the port (the server says which once it listens), so tests running
at the same time never race for one; :meth:`~SyncServerProcess.restart` keeps it, as an
operator's restart would. Needs the ``server`` extra.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

__all__ = ["LISTENING", "SyncServerProcess"]

#: Seconds a server gets to answer its health check after starting.
START_TIMEOUT_S = 60.0
#: What serve-sync prints once it listens.
LISTENING = re.compile(r"mangostore sync server listening on [^\s:]+:(\d+)")


class SyncServerProcess:
    """``mangostore serve-sync`` on loopback over ``store`` (a ``--store`` value), its
    rate limit raised out of a test's way; its output goes to ``log`` (a temporary
    file when not given). ``port`` 0 lets the system choose."""

    def __init__(self, store: str, *, port: int | None = None, log: Path | None = None) -> None:
        self.store = store
        #: 0 until the first start, which lets the system choose a free port (no race
        #: with other servers starting at the same time); restarts keep that port.
        self.port = port or 0
        self.log = log or Path(tempfile.mkdtemp(prefix="mango-server-")) / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it says where it listens and its health
        check answers there."""
        command = [
            sys.executable,
            "-c",
            "from mangostore.cli import main; main()",
            "serve-sync",
            "--store",
            self.store,
            "--port",
            str(self.port),
            "--rate",
            "100000",
            "--log-level",
            "warning",
        ]
        start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:  # the child keeps its own copy
            # This interpreter and mangostore's own command, as a list: no shell.
            self.process = subprocess.Popen(command, stdout=out, stderr=out)  # noqa: S603
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"serve-sync exited with {self.process.returncode}: "
                    + self.log.read_text(errors="replace")[start:][-2000:]
                )
            found = LISTENING.search(self.log.read_text(errors="replace")[start:])
            if found is not None:
                self.port = int(found.group(1))
                try:
                    if httpx.get(self.url + "/v1/health", timeout=2.0).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("serve-sync did not answer its health check in time")

    def stop(self) -> None:
        """Stop the server (SIGTERM, as a service manager would)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port and store."""
        self.stop()
        self.start()

    def __enter__(self) -> SyncServerProcess:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
