"""Statement shapes: SQL text with its literals replaced by ``?``.

Statistics are kept per shape, so ``... WHERE id = 'a'`` and ``... WHERE id = 'b'``
count as one statement, and a value written into the SQL (instead of passed as a
parameter) never reaches a report or a log.

The driver exposes no SQLite tokenizer, so :func:`tokenize` follows SQLite's own
rules (``tokenize.c``): ``'...'`` strings with ``''`` escapes; ``"..."``, ```...```
and ``[...]`` identifiers; ``x'..'`` blobs; decimal numbers with an optional
fraction, exponent and ``_`` digit separators, hexadecimal ``0x..``; ``?``,
``?NNN``, ``:name``, ``@name`` and ``$name`` parameters; ``--`` and ``/* */``
comments. Shapes also fold a list of two or more ``?`` separated by commas (an
``IN`` list or a row of ``VALUES``) into ``?, ...``, so lists of different lengths
make one shape. Normalising is done once per distinct SQL text: the monitor keeps
the shape of each text it has seen.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final, Literal

TokenKind = Literal["literal", "param", "ident", "word", "op"]

_SPACE: Final = frozenset(" \t\n\f\r")
_DIGITS: Final = frozenset("0123456789")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_TWO_CHAR_OPS: Final = frozenset({"||", "<=", ">=", "==", "!=", "<>", "<<", ">>", "->"})


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind and its text as written."""

    kind: TokenKind
    text: str


def _is_id_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$" or ord(ch) >= 0x80


def tokenize(sql: str) -> list[Token]:
    """Split ``sql`` into tokens the way SQLite does; comments and spaces are dropped."""
    out: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        if ch in _SPACE:
            i += 1
        elif ch == "-" and nxt == "-":
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif ch == "/" and nxt == "*":
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch == "'":
            i = _quoted_end(sql, i, "'")
            out.append(Token("literal", "?"))
        elif ch in '"`':
            end = _quoted_end(sql, i, ch)
            out.append(Token("ident", sql[i:end]))
            i = end
        elif ch == "[":
            end = sql.find("]", i)
            end = n if end < 0 else end + 1
            out.append(Token("ident", sql[i:end]))
            i = end
        elif ch in "xX" and nxt == "'":
            i = _quoted_end(sql, i + 1, "'")
            out.append(Token("literal", "?"))
        elif ch in _DIGITS or (ch == "." and nxt in _DIGITS):
            end = _number_end(sql, i)
            if end < n and _is_id_char(sql[end]):  # "12abc": SQLite's error token
                while end < n and _is_id_char(sql[end]):
                    end += 1
                out.append(Token("word", sql[i:end]))
            else:
                out.append(Token("literal", "?"))
            i = end
        elif ch == "?":
            end = i + 1
            while end < n and sql[end] in _DIGITS:
                end += 1
            out.append(Token("param", sql[i:end]))
            i = end
        elif ch in ":@$" and nxt and _is_id_char(nxt):
            end = i + 1
            while end < n and (_is_id_char(sql[end]) or sql.startswith("::", end)):
                end += 2 if sql.startswith("::", end) else 1
            out.append(Token("param", sql[i:end]))
            i = end
        elif _is_id_char(ch):
            end = i + 1
            while end < n and _is_id_char(sql[end]):
                end += 1
            out.append(Token("word", sql[i:end]))
            i = end
        else:
            if sql.startswith("->>", i):
                op = "->>"
            elif ch + nxt in _TWO_CHAR_OPS:
                op = ch + nxt
            else:
                op = ch
            out.append(Token("op", op))
            i += len(op)
    return out


def _quoted_end(sql: str, start: int, quote: str) -> int:
    """Return the index after the quoted token opening at ``start`` (doubled quotes escape)."""
    i, n = start + 1, len(sql)
    while i < n:
        if sql[i] == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _number_end(sql: str, start: int) -> int:
    n = len(sql)
    if sql.startswith(("0x", "0X"), start) and start + 2 < n and sql[start + 2] in _HEX:
        i = start + 2
        while i < n and (sql[i] in _HEX or (sql[i] == "_" and i + 1 < n and sql[i + 1] in _HEX)):
            i += 1
        return i
    i = _digits_end(sql, start)
    if i < n and sql[i] == ".":
        i = _digits_end(sql, i + 1)
    if i < n and sql[i] in "eE":
        j = i + 1
        if j < n and sql[j] in "+-":
            j += 1
        if j < n and sql[j] in _DIGITS:
            i = _digits_end(sql, j)
    return i


def _digits_end(sql: str, i: int) -> int:
    n = len(sql)
    while i < n and (sql[i] in _DIGITS or (sql[i] == "_" and i + 1 < n and sql[i + 1] in _DIGITS)):
        i += 1
    return i


def normalize(sql: str) -> str:
    """Return the shape of ``sql``: literals as ``?``, comments gone, one space between
    tokens, and runs of ``?, ?, ...`` folded into ``?, ...``.

    >>> normalize("SELECT * FROM t WHERE a = 'x' AND b IN (1, 2, 3) -- note")
    'SELECT * FROM t WHERE a = ? AND b IN (?, ...)'
    """
    # Programs run the same statements over and over (every new database runs the
    # same migrations): short ones are remembered; long ones, often one-off text with
    # literals in it, are not, so the cache stays small.
    if len(sql) <= _CACHED_CHARS:
        return _normalize_cached(sql)
    return _normalize(sql)


_CACHED_CHARS: Final = 4096


@functools.lru_cache(maxsize=2048)
def _normalize_cached(sql: str) -> str:
    return _normalize(sql)


def _normalize(sql: str) -> str:
    texts: list[str] = []
    tokens = tokenize(sql)
    i, n = 0, len(tokens)
    while i < n:
        token = tokens[i]
        if _placeholder(token):
            j = i
            while j + 2 < n and tokens[j + 1].text == "," and _placeholder(tokens[j + 2]):
                j += 2
            if j > i:
                texts += ["?", ",", "..."]
                i = j + 1
                continue
            texts.append("?")
        else:
            texts.append(token.text)
        i += 1
    return _spaced(texts)


def _placeholder(token: Token) -> bool:
    return token.kind == "literal" or (token.kind == "param" and token.text == "?")


#: Words after which ``(`` opens a list or a subquery, not a function's arguments.
_SPACE_BEFORE_PAREN: Final = frozenset(
    {
        "AND",
        "AS",
        "BY",
        "EXISTS",
        "FROM",
        "IN",
        "INTO",
        "JOIN",
        "NOT",
        "ON",
        "OR",
        "SELECT",
        "SET",
        "USING",
        "VALUES",
        "WHERE",
        "WITH",
    }
)


def _spaced(texts: list[str]) -> str:
    """Join tokens with single spaces: none before ``,`` ``)`` ``;`` ``.``, none after
    ``(`` ``.``, and none between a function's name and its ``(``."""
    out: list[str] = []
    previous = ""
    for text in texts:
        glued = text in (",", ")", ";", ".") or previous in ("(", ".")
        call = text == "(" and _is_id_char(previous[-1:] or " ")
        if call and previous.upper() in _SPACE_BEFORE_PAREN:
            call = False
        if out and not glued and not call:
            out.append(" ")
        out.append(text)
        previous = text
    return "".join(out)


def parameter_skeleton(sql: str) -> tuple[None, ...] | dict[str, None] | None:
    """Return parameters of NULLs that fit ``sql``'s placeholders, to plan it without values.

    ``None`` when the statement mixes named and numbered placeholders.
    """
    highest = 0
    names: dict[str, int] = {}
    numbered = False
    for token in tokenize(sql):
        if token.kind != "param":
            continue
        text = token.text
        if text == "?":
            highest += 1
            numbered = True
        elif text[0] == "?":
            highest = max(highest, int(text[1:]))
            numbered = True
        elif text not in names:
            highest += 1
            names[text] = highest
    if names and numbered:
        return None
    if names:
        return {name[1:]: None for name in names}
    return (None,) * highest


def first_word(sql: str) -> str:
    """Return the first keyword of ``sql`` in upper case (``""`` for an empty statement)."""
    for token in tokenize(sql):
        return token.text.upper()
    return ""
