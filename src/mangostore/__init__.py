"""mangostore: the local-first, encrypted, embedded data layer of AlphanumericMango.

``mangostore.create(path, passphrase=...)`` makes a new database and returns it with
its recovery key; ``mangostore.open(path, passphrase=...)`` opens an existing one.

>>> import mangostore
>>> with mangostore.open(":memory:", encrypted=False) as db:
...     db.schema_version > 0
True
"""

import logging as _logging
from importlib import metadata as _metadata

from mangostore import errors
from mangostore.db import Database, Status, TableInfo
from mangostore.keys.kdf import KdfParams
from mangostore.opening import Created
from mangostore.opening import create_database as create
from mangostore.opening import open_database as open
from mangostore.settings import Settings

# A library logs and the application decides where the messages go (Python's logging
# HOWTO, "Configuring Logging for a Library"): without a handler here, Python's
# last-resort handler would print warnings such as slow queries on the host
# application's stderr.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

try:
    __version__ = _metadata.version("mangostore")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = [
    "Created",
    "Database",
    "KdfParams",
    "Settings",
    "Status",
    "TableInfo",
    "__version__",
    "create",
    "errors",
    "open",
]
