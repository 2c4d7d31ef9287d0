"""Joining a vault from a sync server: a new machine becomes another device of it.

The first device attaches the vault (``db.sync.attach(url)``); it prints the URL the
others join with, ``https://host/vaults/<vault id>``. :func:`join` fetches the escrow
copy of the vault's wrapped master key there, unwraps it with the vault's passphrase
or recovery key (Argon2id, on this machine: the server never sees either), creates
the database at ``path`` as a new device of the vault, attaches it and syncs, which
starts from the server's latest snapshot and pulls only the batches after it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mangostore.errors import ConfigurationError, SyncError
from mangostore.keys.keyring import Keyring
from mangostore.opening import Created, create_database
from mangostore.sync.http import fetch_escrow, split_join_url

if TYPE_CHECKING:
    from mangostore.clock import Clock
    from mangostore.settings import Settings

__all__ = ["join"]


def join(
    url: str,
    path: str | os.PathLike[str],
    *,
    passphrase: str | None = None,
    recovery_key: str | None = None,
    new_passphrase: str | None = None,
    settings: Settings | None = None,
    clock: Clock | None = None,
    sync: bool = True,
    **http_options: Any,
) -> Created:
    """Create the database at ``path`` as a new device of the vault at ``url``.

    Args:
        url: the join URL the first device printed (``https://host/vaults/<id>``).
        passphrase: the vault's passphrase (of the device whose key the server keeps).
        recovery_key: or its recovery key.
        new_passphrase: this device's own passphrase (default: ``passphrase``; needed
            with a recovery key).
        sync: sync once after joining (``False``: only attach).
        http_options: for :class:`~mangostore.sync.http.HttpTransport` (timeout,
            retries, verify).

    Returns:
        The new database (synced) and its own recovery key.

    Raises:
        ConfigurationError: a URL without a vault id, or no passphrase for this device.
        WrongPassphraseError: neither the passphrase nor the recovery key fits.
        DatabaseExistsError: ``path`` holds a database (attach that one instead).
        SyncTransportError: the server cannot be reached or keeps no such vault.
    """
    base, vault_id = split_join_url(url)
    if vault_id is None:
        raise ConfigurationError(
            "to join a vault use the URL its first device printed, "
            "https://host/vaults/<vault id> ('mangostore sync status' on that device shows it)"
        )
    own = new_passphrase or passphrase
    if own is None:
        raise ConfigurationError("joining with a recovery key needs new_passphrase for this device")
    transport_options = {
        k: v for k, v in http_options.items() if k in ("timeout", "verify", "client")
    }
    escrow = fetch_escrow(base, vault_id, **transport_options)
    if escrow.get("vault_id") != vault_id:
        raise SyncError("the server's key copy is of another vault; check the URL")
    ring = Keyring.from_escrow(escrow, passphrase=passphrase, recovery_key=recovery_key)
    created = create_database(path, own, settings=settings, clock=clock, vault_of=ring)
    created.db.sync.attach(base, **http_options)
    if sync:
        created.db.sync.sync()
    return created
