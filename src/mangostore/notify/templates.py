"""Message templates: bare ``{name}`` placeholders, checked when registered, filled as text.

A template is parsed once with :meth:`string.Formatter.parse` and kept as a list of
literal pieces and placeholder names. Rendering joins those pieces with the
parameters converted to plain strings; :meth:`str.format` is never called, so a
parameter value is never read as a template (``{other}`` in a value stays literal)
and a template can never reach an attribute, an index or a ``__format__`` method.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mangostore.errors import TemplateError

__all__ = ["ParamValue", "Template", "compiled"]

#: The types a parameter value may have; each is substituted as ``str(value)``.
ParamValue = str | int | float | bool
_PARAM_TYPES = (str, int, float, bool)
_PARSER = string.Formatter()


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed message template.

    Attributes:
        text: the template as written (``{{`` and ``}}`` stand for literal braces).
        fields: the placeholder names, in order of first appearance.
    """

    text: str
    fields: tuple[str, ...]
    _pieces: tuple[tuple[str, str | None], ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse ``text``, accepting only bare ``{name}`` placeholders.

        Raises:
            TemplateError: unbalanced braces, a positional ``{}`` or numbered ``{0}``
                field, attribute or index access (``{a.b}``, ``{a[0]}``), a conversion
                (``{a!r}``) or a format spec (``{a:>10}``); ``field`` is ``"template"``.
        """
        if not isinstance(text, str):
            raise TemplateError("a template must be a string", field="template")
        try:
            parsed = list(_PARSER.parse(text))
        except ValueError as exc:
            raise TemplateError(
                f"template {text!r} is malformed ({exc}); write literal braces as {{{{ and }}}}",
                field="template",
            ) from None
        pieces: list[tuple[str, str | None]] = []
        fields: list[str] = []
        for literal, name, spec, conversion in parsed:
            if name is None:
                pieces.append((literal, None))
                continue
            _check_field(text, name, spec, conversion)
            pieces.append((literal, name))
            if name not in fields:
                fields.append(name)
        return cls(text, tuple(fields), tuple(pieces))

    def render(self, params: Mapping[str, Any] | None = None) -> str:
        """Fill the placeholders with ``params``, each value as a plain string.

        Raises:
            TemplateError: a placeholder has no parameter, a parameter matches no
                placeholder, or a value is not text, a number or a boolean; ``field``
                names the parameter.
        """
        given = dict(params or {})
        missing = [name for name in self.fields if name not in given]
        if missing:
            raise TemplateError(
                f"template {self.text!r} needs the parameter(s) {', '.join(missing)}",
                field=missing[0],
            )
        extra = sorted(str(name) for name in given if name not in self.fields)
        if extra:
            allowed = ", ".join(self.fields) or "none"
            raise TemplateError(
                f"template {self.text!r} has no placeholder for {', '.join(extra)} "
                f"(its placeholders: {allowed})",
                field=extra[0],
            )
        values: dict[str, str] = {}
        for name in self.fields:
            value = given[name]
            if not isinstance(value, _PARAM_TYPES):
                raise TemplateError(
                    f"parameter {name!r} must be text, a number or a boolean, "
                    f"not {type(value).__name__}",
                    field=name,
                )
            values[name] = str(value)
        return "".join(literal + (values[name] if name else "") for literal, name in self._pieces)


@functools.lru_cache(maxsize=256)
def compiled(text: str) -> Template:
    """Return :meth:`Template.parse` of ``text``, parsed once per text.

    A type's template is rendered at every send: parsing it again each time would
    cost more than the rendering.

    Raises:
        TemplateError: as :meth:`Template.parse`.
    """
    return Template.parse(text)


def _check_field(text: str, name: str, spec: str | None, conversion: str | None) -> None:
    if not name.isidentifier():
        if name == "":
            problem = "a positional {} placeholder"
        elif name.isdigit():
            problem = f"a numbered {{{name}}} placeholder"
        else:
            problem = f"{{{name}}}, which reaches an attribute or an index"
        raise TemplateError(
            f"template {text!r} has {problem}; only bare {{name}} placeholders are allowed",
            field="template",
        )
    if conversion is not None:
        raise TemplateError(
            f"template {text!r} converts {{{name}!{conversion}}}; only bare {{name}} "
            "placeholders are allowed",
            field="template",
        )
    if spec:
        raise TemplateError(
            f"template {text!r} formats {{{name}:{spec}}}; only bare {{name}} placeholders "
            "are allowed",
            field="template",
        )
