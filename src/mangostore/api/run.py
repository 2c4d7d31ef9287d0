"""Running the API (``mangostore serve``): on a loopback address or a unix socket.

The API is a local interface: it answers the terminal's front end and the assistant
on the same machine. :func:`check_host` refuses any other address unless the caller
says so explicitly; a unix socket is created readable and writable by its owner only
(mode 0600), so other local users cannot even connect.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from mangostore import Database
from mangostore.api.settings import ApiSettings
from mangostore.errors import ConfigurationError

__all__ = ["check_host", "is_loopback", "loopback_names", "serve", "unix_socket"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_names(host: str, port: int) -> tuple[str, ...]:
    """The ``Host`` names a client of a server on loopback ``host`` sends (with or without
    the port): the address itself, ``localhost`` and the loopback addresses."""
    bare = host.strip("[]")
    written = f"[{bare}]" if ":" in bare else bare
    names = dict.fromkeys((written, "localhost", "127.0.0.1", "[::1]"))
    return tuple(names) + tuple(f"{name}:{port}" for name in names)


def check_host(host: str, *, allow_remote: bool) -> None:
    """Refuse an address other machines could reach, unless ``allow_remote``.

    Raises:
        ConfigurationError: ``host`` is not loopback and ``allow_remote`` is false.
    """
    if not is_loopback(host) and not allow_remote:
        raise ConfigurationError(
            f"{host} is not a loopback address: the API would be reachable from other "
            "machines, without TLS. Serve on 127.0.0.1 or a unix socket (--socket), or "
            "pass --allow-remote behind a TLS proxy"
        )


@contextlib.contextmanager
def unix_socket(path: Path) -> Iterator[socket.socket]:
    """A unix stream socket bound at ``path`` with mode 0600, removed afterwards.

    A socket file left by a server that is gone is replaced; a live one is not.

    Raises:
        ConfigurationError: ``path`` holds something other than a socket, or a
            server already listens on it.
    """
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigurationError(f"{path} exists and is not a socket: choose another path")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError as exc:
                if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                    raise
            else:
                raise ConfigurationError(f"a server already listens on {path}")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask makes the socket 0600 from the moment it exists.
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(previous)
    try:
        os.chmod(path, 0o600)
        yield sock
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def serve(
    db: Database,
    *,
    host: str = "127.0.0.1",
    port: int = 8766,
    socket_path: Path | None = None,
    settings: ApiSettings | None = None,
    log_level: str = "info",
) -> None:
    """Run the API over ``db`` until interrupted (uvicorn), on ``host``:``port`` or, when
    ``socket_path`` is given, on that unix socket. The caller checks the host first
    (:func:`check_host`) and closes ``db`` after."""
    import uvicorn

    from mangostore.api.app import create_app

    settings = settings or ApiSettings()
    if socket_path is None and settings.allowed_hosts is None and is_loopback(host):
        settings = dataclasses.replace(settings, allowed_hosts=loopback_names(host, port))
    app = create_app(db, settings)
    # The app limits bodies itself; this bounds a request's headers too.
    options = {"log_level": log_level, "h11_max_incomplete_event_size": 64 * 1024}
    if socket_path is None:
        uvicorn.run(app, host=host, port=port, **options)  # type: ignore[arg-type]
        return
    with unix_socket(socket_path) as sock:
        uvicorn.run(app, fd=sock.fileno(), **options)  # type: ignore[arg-type]
