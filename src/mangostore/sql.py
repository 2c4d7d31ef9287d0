"""Identifier quoting: the one place SQL text is built from names."""

from __future__ import annotations


def quote_identifier(name: str) -> str:
    """Quote a table or column name for SQL.

    Names reaching this function already come from an allow-list built from the
    schema; quoting them as well means a name can never be read as SQL.
    """
    return '"' + name.replace('"', '""') + '"'
