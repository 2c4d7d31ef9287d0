"""One check for every text argument of the knowledge graph and memory services.

SQLite keeps text as UTF-8, and a Python string holding a surrogate code point
(``"x\\ud800y"``, what ``bytes.decode(errors="surrogateescape")`` makes of bytes that
are not UTF-8) has no UTF-8 form. Left alone, such a string reaches the driver, which
raises ``UnicodeEncodeError`` while binding it, or the embedder's tokenizer, which
raises ``TypeError``: raw exceptions from deep inside a call, sometimes half-way through
its work. The repositories already refuse it for the columns they write
(:meth:`mangostore.repos.spec.ColumnSpec.check`), but the services look text up (names,
aliases, keys, queries) before any repository sees it.

:func:`checks_text_arguments` wraps every public method of a service class, so each
argument is checked once, on the way in, before anything is read or written: a string,
and the strings inside lists, tuples, sets and dicts (JSON values, metadata). The
refusal is an :class:`~mangostore.errors.InvalidValueError` whose ``field`` is the
parameter's name. Iterators are not walked, since that would consume them; a bad string
found in one later still leaves as an ``InvalidValueError``, and the transaction it was
found in is rolled back.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from mangostore.errors import InvalidValueError
from mangostore.repos.spec import encodable

C = TypeVar("C", bound=type)

#: The containers whose strings are checked (iterators are not: walking would consume them).
_CONTAINERS = (dict, list, tuple, set, frozenset)

_WHAT_TO_DO = (
    "which is not valid Unicode and cannot be stored or searched: pass valid text (decode "
    "bytes with errors='replace', not 'surrogateescape')"
)


def check_text(value: str, field: str) -> None:
    """Refuse ``value`` if it cannot be encoded as UTF-8 (it holds a surrogate code point).

    Raises:
        InvalidValueError: naming ``field``, where in the text the surrogate is and
            what to do; the text itself is not quoted (it may be a secret).
    """
    if not encodable(value):
        raise _refusal(field, value, nested=False)


def checks_text_arguments(cls: C) -> C:
    """Make every public method of ``cls`` check its text arguments first.

    Each argument, and each string inside a list, tuple, set or dict argument, goes
    through :func:`check_text` before the method runs; the parameter's name is the
    error's ``field``. Properties and private methods are left as they are.

    Returns:
        ``cls`` itself, with its public methods wrapped.
    """
    for name, attribute in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(attribute):
            setattr(cls, name, _checked(attribute))
    return cls


def _checked(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``method`` so that its arguments are checked before it runs."""
    parameters = list(inspect.signature(method).parameters.values())[1:]  # after self
    positional = [
        p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    rest = next((p.name for p in parameters if p.kind == p.VAR_POSITIONAL), None)
    where = method.__qualname__

    @functools.wraps(method)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        for index, value in enumerate(args):
            if index < len(positional):
                _check_argument(value, positional[index])
            elif rest is not None:
                _check_argument(value, rest)
            # else: too many arguments, which the call itself reports (TypeError)
        for field, value in kwargs.items():
            _check_argument(value, field)
        try:
            return method(self, *args, **kwargs)
        except UnicodeEncodeError as exc:
            # Only text the walk above could not see gets here (an iterator's items):
            # the driver refused it, and the transaction around it was rolled back.
            raise InvalidValueError(
                f"a text value given to {where} contains a surrogate code point, {_WHAT_TO_DO}"
            ) from exc

    return checked


def _check_argument(value: object, field: str) -> None:
    if isinstance(value, str):
        check_text(value, field)
        return
    if isinstance(value, _CONTAINERS):
        for text in _strings_inside(value):
            if not encodable(text):
                raise _refusal(field, text, nested=True)


def _strings_inside(value: object) -> Iterator[str]:
    """Yield every string inside ``value``: items, dict keys and values, at any depth.

    Iterative, and each container is visited once, so neither deep nesting nor a
    container that holds itself can stop the walk.
    """
    stack = [value]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, _CONTAINERS) and id(item) not in seen:
            seen.add(id(item))
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                stack.extend(item)


def _refusal(field: str, text: str, *, nested: bool) -> InvalidValueError:
    index = next(i for i, ch in enumerate(text) if "\ud800" <= ch <= "\udfff")
    subject = f"a string inside {field}" if nested else field
    return InvalidValueError(
        f"{subject} contains a surrogate code point (U+{ord(text[index]):04X} at index "
        f"{index}), {_WHAT_TO_DO}",
        field=field,
    )
