"""mangostore: the local-first, encrypted, embedded data layer of AlphanumericMango.

>>> import mangostore
>>> with mangostore.open(":memory:", encrypted=False) as db:
...     db.schema_version > 0
True
"""

from importlib import metadata as _metadata

from mangostore import errors
from mangostore.db import Database, Status, TableInfo
from mangostore.keys.kdf import KdfParams
from mangostore.opening import open_database as open
from mangostore.settings import Settings

try:
    __version__ = _metadata.version("mangostore")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = [
    "Database",
    "KdfParams",
    "Settings",
    "Status",
    "TableInfo",
    "__version__",
    "errors",
    "open",
]
