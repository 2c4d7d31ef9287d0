"""What the key management parts use of the database, as protocols.

The parts are typed against these protocols, not against
:class:`mangostore.Database`: the database module imports the store, which imports
the field cipher, so importing the database back (even only for type checking)
would put the key modules in an import cycle with it. :class:`mangostore.Database`
conforms; the type checker verifies it wherever a database is passed in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mangostore.clock import Clock
    from mangostore.engine.connection import Row
    from mangostore.engine.store import Params, Store

__all__ = ["RotationDatabase"]


class RotationDatabase(Protocol):
    """The database as a key rotation sees it: its store, clock and read-only SQL."""

    @property
    def store(self) -> Store:
        """The connections: write transactions and the field cipher."""
        ...

    @property
    def clock(self) -> Clock:
        """Where every timestamp comes from."""
        ...

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a read-only statement and return its rows."""
        ...
