"""Testing applications built on mangostore: a pytest plugin, factories, timing, snapshots.

Installing mangostore registers the pytest plugin :mod:`mangostore_pytest` (a module
of its own beside the package; entry point ``pytest11``). It only adds fixtures, all
named ``mango_*``: a project that does not ask for one is not affected. See docs/testing.md.

- :mod:`.databases`: fresh test databases; fast key derivation, refused outside tests;
- :mod:`.factories`: ``Factory(db)``, valid records of every table (``make.user()``);
- :mod:`.strategies`: Hypothesis strategies per record type (imports Hypothesis);
- :mod:`.timing`: ``assert_query_time`` and ``assert_uses_index``;
- :mod:`.snapshot`: a database's logical content, for comparisons.

The names below are imported on first use, so that loading the plugin (which pytest
does at start-up wherever mangostore is installed) costs as little as it can.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mangostore.testing.databases import (
        FAST_KDF,
        TEST_PASSPHRASE,
        create_encrypted_test_db,
        fast_test_settings,
        open_memory_test_db,
    )
    from mangostore.testing.factories import FACTORY_METHODS, Factory
    from mangostore.testing.snapshot import Snapshot, snapshot
    from mangostore.testing.timing import (
        QueryTiming,
        assert_query_time,
        assert_uses_index,
        measure,
        query_plan,
    )

#: Where each public name lives.
_HOMES = {
    "FAST_KDF": "databases",
    "TEST_PASSPHRASE": "databases",
    "create_encrypted_test_db": "databases",
    "fast_test_settings": "databases",
    "open_memory_test_db": "databases",
    "FACTORY_METHODS": "factories",
    "Factory": "factories",
    "Snapshot": "snapshot",
    "snapshot": "snapshot",
    "QueryTiming": "timing",
    "assert_query_time": "timing",
    "assert_uses_index": "timing",
    "measure": "timing",
    "query_plan": "timing",
}

__all__ = [
    "FACTORY_METHODS",
    "FAST_KDF",
    "TEST_PASSPHRASE",
    "Factory",
    "QueryTiming",
    "Snapshot",
    "assert_query_time",
    "assert_uses_index",
    "create_encrypted_test_db",
    "fast_test_settings",
    "measure",
    "open_memory_test_db",
    "query_plan",
    "snapshot",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
