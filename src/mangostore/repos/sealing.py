"""A repository's encrypted columns: sealed with the field cipher on the way in, opened
on the way out, stored as plain JSON by a database without a keyring."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from mangostore.engine.connection import UndecodableText
from mangostore.engine.pragmas import Connection
from mangostore.errors import ConfigurationError, MissingFieldError, TamperedDataError
from mangostore.keys.field_cipher import FieldCipher

__all__ = ["FieldSealer"]

_UNSET: Any = object()


class FieldSealer:
    """Seals and opens the encrypted columns of one table.

    Args:
        table: the table.
        find_cipher: returns the database's field cipher (``None`` without a
            keyring); asked once, on first use.
    """

    def __init__(self, table: str, find_cipher: Callable[[], FieldCipher | None]) -> None:
        self.table = table
        self._find_cipher = find_cipher
        self._cipher: FieldCipher | None = _UNSET

    def __repr__(self) -> str:
        return f"<FieldSealer {self.table}>"

    def cipher(self) -> FieldCipher | None:
        """The field cipher, or ``None`` for a database without a keyring."""
        # Looked up once: this runs for every encrypted value read or written.
        if self._cipher is _UNSET:
            self._cipher = self._find_cipher()
        return self._cipher

    def key_ready(self, owner: Any, values: int) -> bool:
        """Whether sealing ``values`` values for ``owner`` now runs no statement."""
        cipher = self.cipher()
        return cipher is None or (isinstance(owner, str) and cipher.key_ready(owner, values))

    def seal(
        self,
        conn: Connection,
        values: dict[str, Any],
        secrets: Mapping[str, Any],
        row_id: str,
        owner: Any,
    ) -> None:
        """Replace the JSON text of each column of ``secrets`` in ``values`` by its
        envelope, sealed for row ``row_id`` of ``owner`` in the write transaction.

        Raises:
            MissingFieldError: the owner is not known (``user_id`` missing).
        """
        cipher = self.cipher()
        if cipher is None:
            return  # a database without a keyring stores these columns as plain JSON
        if not isinstance(owner, str):
            raise MissingFieldError(
                f"{self.table} needs user_id to encrypt its protected fields", field="user_id"
            )
        for name in secrets:
            values[name] = cipher.encrypt(
                conn, self.table, name, row_id, owner, values[name].encode("utf-8")
            )

    def open(self, name: str, row_id: Any, owner: Any, stored: Any) -> Any:
        """Return the value stored in column ``name`` of row ``row_id`` of ``owner``.

        Raises:
            TamperedDataError: it is not a genuine envelope for this place (or, with a
                keyring, not an envelope at all).
            ConfigurationError: it is sealed and the database has no keyring.
        """
        cipher = self.cipher()
        if isinstance(stored, str | UndecodableText):
            if cipher is not None:
                # With a keyring every stored value is an envelope; text here was
                # written around mangostore and must not be trusted.
                raise TamperedDataError(
                    f"{self.table}.{name} of record {row_id!r} is not an encrypted "
                    "envelope: it was modified outside mangostore"
                )
            if isinstance(stored, UndecodableText):
                raise TamperedDataError(
                    f"{self.table}.{name} of record {row_id!r} is not valid text: "
                    "it was modified outside mangostore"
                )
            return json.loads(stored)  # stored by a database without a keyring
        if cipher is None:
            raise ConfigurationError(
                f"{self.table}.{name} is encrypted; open the database with its passphrase "
                "to read it"
            )
        plaintext = cipher.decrypt(self.table, name, row_id, owner, bytes(stored))
        return json.loads(plaintext)
