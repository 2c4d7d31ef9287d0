"""The MCP server of a mangostore database (the ``mcp`` extra): the reference memory
server's tools on the knowledge graph, plus remember, recall and ask.

``mangostore mcp PATH`` runs it over stdio; see docs/mcp.md.
"""

from __future__ import annotations

from mangostore.mcp.graph import ReferenceGraph
from mangostore.mcp.server import SERVER_NAME, create_server

__all__ = ["SERVER_NAME", "ReferenceGraph", "create_server"]
