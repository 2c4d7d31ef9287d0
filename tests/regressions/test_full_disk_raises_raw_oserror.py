"""A full disk raised raw ``OSError`` (errno 28) from every keyring write, and opening on
a nearly full disk said "disk I/O error". Now each says the disk is full
(:class:`DiskFullError`) and leaves everything as it was.

The disk is a small tmpfs mounted for the test (root only; skipped elsewhere).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import PASSPHRASE, skip_unless_available

import mangostore
from mangostore import Settings
from mangostore.errors import DiskFullError
from mangostore.keys.rotation import rotate_field_keys

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    skip_unless_available(mounted.returncode == 0, "mounting a small tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Fill the disk to the last byte; return the ballast file (delete it to free space)."""
    ballast = folder / "ballast"
    with open(ballast, "wb", buffering=0) as out:
        for chunk in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while out.write(b"\0" * chunk) == chunk:
                    pass
    return ballast


def test_full_disk_gives_disk_full_errors(small_disk: Path, fast_settings: Settings) -> None:
    path = small_disk / "full.db"
    other = "a new passphrase"
    with mangostore.create(path, PASSPHRASE, settings=fast_settings).db as db:
        ann = db.users.create(username="ann", security_profile={"pin": "1"}).id
        ballast = fill(small_disk)
        with pytest.raises(DiskFullError, match="full"):
            db.users.create(username="bob", security_profile={"pin": "2"})  # a new user key
        with pytest.raises(DiskFullError):
            db.change_passphrase(PASSPHRASE, other)
        with pytest.raises(DiskFullError):
            rotate_field_keys(db)
        with pytest.raises(DiskFullError):
            db.privacy.erase_user(ann)
        assert db.users.get_by_username("bob") is None
        ballast.unlink()
        assert db.users.get(ann).security_profile == {"pin": "1"}
    # Nothing changed: the old passphrase opens it, the erased user is still there.
    with mangostore.open(path, PASSPHRASE, create=False) as db:
        assert db.users.get(ann).security_profile == {"pin": "1"}


def test_opening_on_a_full_disk_says_so(small_disk: Path, fast_settings: Settings) -> None:
    path = small_disk / "full.db"
    mangostore.create(path, PASSPHRASE, settings=fast_settings).db.close()
    fill(small_disk)
    with pytest.raises(DiskFullError, match="bytes free"):
        mangostore.open(path, PASSPHRASE, create=False)
