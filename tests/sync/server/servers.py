"""Sync servers in processes of their own, on loopback, for end-to-end tests:
:class:`mangostore.testing.sync_server.SyncServerProcess` (named ``ServerProcess``
here), and the ``--store`` of a test's store."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from tests.sync.server.conftest import StoreTarget

from mangostore.testing.sync_server import SyncServerProcess as ServerProcess


def store_url(target: StoreTarget) -> str:
    """The ``--store`` of ``serve-sync`` for a test's store."""
    if target.kind == "sqlite":
        return "sqlite://" + str(Path(target.location).resolve())
    from tests.sync.server.conftest import pg_dsn

    separator = "&" if "?" in pg_dsn() else "?"
    return pg_dsn() + separator + "options=" + quote(f"-csearch_path={target.schema}")


__all__ = ["ServerProcess", "store_url"]
