"""The public surface is exactly what __all__ lists."""

import mangostore
from mangostore import errors


def test_all_lists_every_public_name() -> None:
    public = {name for name in dir(mangostore) if not name.startswith("_")}
    # Submodules imported as a side effect are not part of the contract.
    modules = {"db", "engine", "keys", "schema", "settings", "errors"}
    assert set(mangostore.__all__) - {"__version__"} == public - (modules - {"errors"})


def test_every_error_derives_from_the_root() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.MangoError), name
