"""The same scripted session against the npm reference memory server and
``mangostore mcp``: the reference tools give the same results.

Needs the reference server installed (``npm install
@modelcontextprotocol/server-memory``) and ``MANGOSTORE_TEST_MCP_REFERENCE`` naming its
``dist/index.js``; skips with that reason otherwise.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tests.mcp.peer import SESSION, mangostore_server, reference_server, run_session

REFERENCE_ENV = "MANGOSTORE_TEST_MCP_REFERENCE"


@pytest.fixture
def reference() -> Path:
    """The reference server's script; skips the test when it is not installed."""
    script = os.environ.get(REFERENCE_ENV, "")
    if not script or shutil.which("node") is None:
        pytest.skip(
            f"the peer check needs node and {REFERENCE_ENV} naming the dist/index.js of "
            "@modelcontextprotocol/server-memory; it is unset"
        )
    return Path(script)


def test_the_reference_tools_answer_alike(reference: Path, tmp_path: Path) -> None:
    (tmp_path / "ref").mkdir()
    (tmp_path / "own").mkdir()
    theirs = run_session(reference_server(reference, tmp_path / "ref"))
    ours = run_session(mangostore_server(tmp_path / "own", "--no-embeddings"))
    for (tool, _arguments), expected, got in zip(SESSION, theirs, ours, strict=True):
        assert got == expected, tool
