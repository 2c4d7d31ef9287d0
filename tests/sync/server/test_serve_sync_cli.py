"""``mangostore serve-sync`` and ``open_store``: the store URL, TLS options and the
errors a mistyped command gets (the running server is tested end to end elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mangostore.cli import cli
from mangostore.errors import ConfigurationError
from mangostore.sync.server.run import open_store
from mangostore.sync.server.sqlite_store import SqliteRelayStore


def test_a_plain_path_and_a_sqlite_url_open_the_sqlite_store(tmp_path: Path) -> None:
    for given in (str(tmp_path / "a.db"), "sqlite://" + str(tmp_path / "b.db")):
        store = open_store(given)
        try:
            assert isinstance(store, SqliteRelayStore)
            assert store.vault("none") is None
        finally:
            store.close()
    assert (tmp_path / "a.db").exists()
    assert (tmp_path / "b.db").exists()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite://relative/path.db", "three slashes"),
        ("mysql://host/db", "unknown sync store 'mysql'"),
        ("/no/such/folder/relay.db", "does not exist"),
    ],
)
def test_a_bad_store_url_says_what_to_write(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        open_store(url)


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not a SQLite file, it is a shopping list " * 100)
    with pytest.raises(ConfigurationError, match="cannot be opened"):
        open_store(str(path))


def test_tls_needs_both_files(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not read: the command refuses first")
    result = CliRunner().invoke(
        cli, ["serve-sync", "--store", str(tmp_path / "relay.db"), "--certfile", str(cert)]
    )
    assert result.exit_code == 1
    assert "both --certfile and --keyfile" in result.stderr
