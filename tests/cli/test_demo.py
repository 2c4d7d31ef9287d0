"""``mangostore demo``: the whole tour runs without a prompt, says what each step
showed, and leaves no folder, server or open database behind, also when it fails."""

from __future__ import annotations

import importlib
import json
import re
import socket
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mangostore.cli import cli, common
from mangostore.cli.demo_steps import (
    Step,
    Tour,
    api_request,
    clean_up,
    sync_through_server,
)

#: The module (``mangostore.cli.demo`` as an attribute is the command).
demo = importlib.import_module("mangostore.cli.demo")

#: What each step of the tour must have printed (one or more lines that prove it ran).
EXPECTED: dict[str, list[str]] = {
    "Look at the file on disk": ["'ada@example.com' appears nowhere", "A wrong passphrase"],
    "Knowledge graph search, explained, and memory": [
        "1. zsh",
        "Why zsh:",
        "graph found relation: Ada -preferred_shell-> zsh",
    ],
    "A notification held through quiet hours": [
        "status pending; log: delivered; desktop: pending, held until 07:00",
        "The scheduler runs now: 0 delivered",
        "[desktop pop-up] build.failed: site failed",
        "1 delivered; the notification is now delivered.",
    ],
    "Two devices syncing through a local sync server": [
        "Sync server listening on http://127.0.0.1:",
        "The desktop joined through that URL and synced: it has 2 users and 3 commands.",
        "laptop -> desktop: the desktop now has the command 'make demo'.",
        'desktop -> laptop: the laptop now has preferences {"theme": "light"',
        "'ada@example.com' appears in them: False.",
    ],
    "Backup, verify, restore": ["Verified: True", "row counts match: True."],
    "The HTTP API answers": ["/v1/login  -> 200", "GET  /v1/me  -> 200  username 'ops'", "403"],
    "The audit chain": ["chain verified: True."],
    "Stats with recommendations": [
        "Recommendations:",
        "[info] 'SELECT count(*) FROM command_history WHERE working_directory = ?' scans",
        'do: CREATE INDEX "idx_command_history_working_directory"',
        "filtering by working_directory;",
    ],
    "Clean up": ["Stopped the HTTP API", "Stopped the sync server", "Closed demo.db."],
}


def run(args: list[str]) -> Result:
    """Run the command with no passphrase in the environment and nothing on stdin."""
    return CliRunner().invoke(cli, args, env={common.PASSPHRASE_ENV: None}, input="")


def demo_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mangostore-demo-server-")]


def port_is_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_demo_tells_the_whole_story_and_removes_its_folder() -> None:
    result = run(["demo"])

    assert result.exit_code == 0, result.output
    text = result.stdout
    for number, step in enumerate(demo.STEPS, start=1):
        assert f"{number}. {step.title}" in text
    # Rich wraps long lines at the terminal's width: compare with the breaks removed.
    flat = " ".join(text.split())
    for lines in EXPECTED.values():
        for line in lines:
            assert " ".join(line.split()) in flat
    found = re.search(r"Database: (\S+)/demo\.db", text)
    assert found is not None
    assert not Path(found.group(1)).exists()
    assert f"{found.group(1)} was deleted" in text
    ports = [int(p) for p in re.findall(r"on port (\d+)\.", text)]
    assert len(ports) == 2
    assert all(port_is_closed(port) for port in ports)
    assert demo_threads() == []


def test_demo_json_gives_each_steps_output() -> None:
    result = run(["demo", "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [s["title"] for s in data["steps"]] == [step.title for step in demo.STEPS]
    outputs = {s["title"]: " ".join(" ".join(s["output"]).split()) for s in data["steps"]}
    for title, lines in EXPECTED.items():
        for line in lines:
            assert " ".join(line.split()) in outputs[title], title
    assert data["deleted"] is True
    assert not Path(data["folder"]).exists()


def test_an_interrupted_demo_stops_its_server_and_deletes_its_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[Tour] = []

    def interrupt(tour: Tour) -> None:
        seen.append(tour)
        raise KeyboardInterrupt

    steps = [*demo.STEPS[:3], Step("sync", sync_through_server), Step("Ctrl-C", interrupt)]
    monkeypatch.setattr(demo, "STEPS", steps)

    result = run(["demo"])

    assert result.exit_code != 0
    (tour,) = seen
    assert not tour.folder.exists()
    assert tour.db is None
    assert tour.closers == []
    port = int(re.findall(r"listening on http://127\.0\.0\.1:(\d+)", result.stdout)[0])
    assert port_is_closed(port)
    assert demo_threads() == []


def test_a_failing_step_still_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Tour] = []

    def fail(tour: Tour) -> None:
        seen.append(tour)
        raise RuntimeError("a step failed")

    monkeypatch.setattr(demo, "STEPS", [*demo.STEPS[:3], Step("fails", fail)])

    result = run(["demo"])

    assert isinstance(result.exception, RuntimeError)
    (tour,) = seen
    assert not tour.folder.exists()
    assert tour.db is None


def test_without_the_server_extra_the_demo_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # A module set to None in sys.modules cannot be imported: as if not installed.
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    steps = [
        *demo.STEPS[:3],
        Step("sync", sync_through_server),
        Step("api", api_request),
        Step("clean up", clean_up),
    ]
    monkeypatch.setattr(demo, "STEPS", steps)

    result = run(["demo"])

    assert result.exit_code == 0, result.output
    flat = " ".join(result.stdout.split())
    assert "Skipped: the sync server needs the server extra" in flat
    assert "Instead, a relay in memory: the desktop has 1 users." in flat
    assert 'the laptop now has preferences {"theme": "light"' in flat
    assert "Skipped: the HTTP API needs the server extra" in flat
    assert "Closed desktop.db." in flat
