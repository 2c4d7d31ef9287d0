"""Opening a store from a URL, and running the server (``mangostore serve-sync``)."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

from mangostore.errors import ConfigurationError
from mangostore.sync.server.settings import ServerSettings
from mangostore.sync.server.store import RelayStore

__all__ = ["open_store", "serve"]


def open_store(url: str) -> RelayStore:
    """The store at ``url``: ``sqlite:///path/to/file.db`` (or a plain path), or
    ``postgresql://user@host:port/database``.

    Raises:
        ConfigurationError: an unknown scheme, or a store that cannot be opened.
    """
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        from mangostore.sync.server.pg_store import PostgresRelayStore

        return PostgresRelayStore(url)
    from mangostore.sync.server.sqlite_store import SqliteRelayStore

    if scheme == "sqlite":
        path = url.removeprefix("sqlite://")
        if not path.startswith("/"):
            raise ConfigurationError(
                "a SQLite store URL is sqlite:///absolute/path (three slashes), "
                f"not {url!r}; or give a plain path"
            )
        return SqliteRelayStore(Path(path))
    if scheme:
        raise ConfigurationError(
            f"unknown sync store {scheme!r}: use sqlite:///path or postgresql://..."
        )
    return SqliteRelayStore(Path(url))


def serve(
    store: RelayStore,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    settings: ServerSettings | None = None,
    log_level: str = "info",
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> None:
    """Run the server until interrupted (uvicorn), closing the store after.

    Once it listens it prints ``mangostore sync server listening on HOST:PORT`` on
    standard output (with ``port=0``, the port the system chose).
    """
    import uvicorn

    from mangostore.sync.server.app import create_app

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            for server in self.servers:
                for bound in server.sockets:
                    address = bound.getsockname()
                    print(
                        f"mangostore sync server listening on {address[0]}:{address[1]}",
                        flush=True,
                    )

    config = uvicorn.Config(
        create_app(store, settings),
        host=host,
        port=port,
        log_level=log_level,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        # The app limits bodies itself; this bounds a request's headers too.
        h11_max_incomplete_event_size=64 * 1024,
    )
    try:
        _Server(config).run()
    finally:
        store.close()
