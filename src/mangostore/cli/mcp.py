"""``mangostore mcp``: the MCP server of a database over stdio (docs/mcp.md)."""

from __future__ import annotations

from pathlib import Path

import click

from mangostore.cli.common import (
    CommandError,
    Feature,
    existing_database,
    key_file_option,
    open_for,
    plain_option,
    resolve_user,
)

__all__ = ["mcp"]

#: The schema version of the knowledge graph's search (spoken retrieval).
MCP = Feature("the MCP server", 16)


@click.command("mcp")
@existing_database
@click.option(
    "--user",
    "user",
    help="Whose memory the server holds: a user name or id (default: the only user).",
)
@click.option(
    "--no-embeddings",
    is_flag=True,
    help="Search without the embedding model (full text, names and the graph only).",
)
@plain_option
@key_file_option
def mcp(
    path: Path, user: str | None, no_embeddings: bool, plain: bool, key_file: Path | None
) -> None:
    """Serve the MCP memory tools of the database at PATH over stdio, for an AI
    assistant: the reference memory server's tools on the knowledge graph, plus
    remember, recall and ask. The passphrase comes from --key-file or
    MANGOSTORE_PASSPHRASE (stdin carries the protocol). See docs/mcp.md."""
    try:
        from mangostore.mcp import create_server
    except ImportError:
        raise CommandError(
            "the MCP server needs the mcp extra: pip install 'mangostore[mcp]'"
        ) from None
    with open_for(path, plain=plain, key_file=key_file, feature=MCP) as db:
        if user is not None:
            user_id = resolve_user(db, user)
        else:
            users = db.users.list(limit=2)
            if len(users) != 1:
                raise CommandError(
                    f"{path} has {'no users' if not users else 'several users'}: name the one "
                    "whose memory to serve with --user (add one with 'mangostore user add')"
                )
            user_id = users[0].id
        if no_embeddings:
            db.kg.set_embedder(None)
        create_server(db, user_id).run()
