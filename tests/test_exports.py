"""The public surface is exactly what __all__ lists."""

import inspect

import mangostore
from mangostore import errors


def test_all_lists_every_public_name() -> None:
    # Submodules become attributes when imported; they are reached by their own path.
    public = {
        name
        for name, value in vars(mangostore).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(mangostore.__all__) - {"__version__", "errors"} == public


def test_every_error_derives_from_the_root() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        # Warnings have a root of their own: an error and a warning are never one class.
        if issubclass(cls, Warning):
            assert issubclass(cls, errors.MangoWarning), name
            assert not issubclass(cls, errors.MangoError), name
        else:
            assert issubclass(cls, errors.MangoError), name


def test_errors_all_lists_every_error_class() -> None:
    classes = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, Exception)
    }
    assert set(errors.__all__) == classes
