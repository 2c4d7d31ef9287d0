"""Progress bars of long commands: drawn on a terminal's stderr, never with --json, never
when stderr is not a terminal (as under click's runner), and never on stdout."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console
from tests.conftest import FAST_KDF, PASSPHRASE

import mangostore
from mangostore import Settings
from mangostore.cli import cli, common
from mangostore.cli import progress as cli_progress
from mangostore.cli.progress import progress_bar, stderr_is_terminal
from mangostore.clock import ManualClock
from mangostore.kg import HashingEmbedder
from mangostore.privacy.service import DAY_MS

#: A stage each long command reports: its bar shows the name.
STAGES = {
    "kg import": "importing entities",
    "kg search": "embedding",
    "rotate-keys": "re-encrypting",
    "privacy retention": "security_events",
    "privacy export": "exporting rows",
}
LONG_COMMANDS = tuple(STAGES)
#: What rich draws a bar with: a line of these, moved about with escape sequences.
BAR = "\u2501"


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    """An encrypted database: ann with a graph, old command history, a sealed field."""
    path = tmp_path / "vault.db"
    clock = ManualClock()
    settings = Settings(kdf=FAST_KDF, backup_before_migrate=False)
    with mangostore.create(path, passphrase=PASSPHRASE, settings=settings, clock=clock).db as db:
        ann = db.users.create(username="ann", security_profile={"pin": "1234"})
        db.kg.set_embedder(None)
        db.kg.upsert_entity(ann.id, "command", "fish", description="a friendly shell")
        db.command_history.create(user_id=ann.id, command="ls")
        clock.advance(400 * DAY_MS)
    return path


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "graph.jsonl"
    lines = [{"type": "entity", "name": f"tool{n}", "entityType": "command"} for n in range(5)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def hashing_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands' default embedder becomes the instant test double."""
    monkeypatch.setattr("mangostore.kg.semantic.default_embedder", HashingEmbedder)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Make stderr count as a terminal; what the bars draw lands in the yielded buffer."""
    screen = io.StringIO()
    monkeypatch.setattr(cli_progress, "stderr_is_terminal", lambda: True)
    monkeypatch.setattr(
        cli_progress,
        "Console",
        lambda file: Console(file=screen, force_terminal=True, width=100),
    )
    return screen


def commands(vault: Path, jsonl: Path, folder: Path) -> dict[str, list[str]]:
    """The long commands, each with the arguments it needs on ``vault``."""
    return {
        "kg import": ["kg", "import", str(vault), str(jsonl), "--user", "ann"],
        "kg search": ["kg", "search", str(vault), "shell", "--user", "ann"],
        "rotate-keys": ["rotate-keys", str(vault), "--batch-size", "1"],
        "privacy retention": ["privacy", "retention", str(vault), "--archive-dir", str(folder)],
        "privacy export": ["privacy", "export", str(vault), "--user", "ann", "-o", str(folder)],
    }


def run(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, env={common.PASSPHRASE_ENV: PASSPHRASE})


def test_click_runner_output_is_not_a_terminal() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert not stderr_is_terminal()  # pytest captures stderr here as well


@pytest.mark.usefixtures("hashing_embedder")
@pytest.mark.parametrize("command", LONG_COMMANDS)
def test_no_progress_is_printed_when_stderr_is_not_a_terminal(
    command: str, vault: Path, jsonl: Path, tmp_path: Path
) -> None:
    result = run(commands(vault, jsonl, tmp_path / "out")[command])
    assert result.exit_code == 0, result.output
    assert STAGES[command] not in result.stderr
    assert BAR not in result.stderr
    assert "\x1b" not in result.stderr  # no cursor movement or colour


@pytest.mark.usefixtures("hashing_embedder")
@pytest.mark.parametrize("command", LONG_COMMANDS)
def test_a_terminal_gets_a_bar_on_stderr_and_stdout_stays_clean(
    command: str, vault: Path, jsonl: Path, tmp_path: Path, terminal: io.StringIO
) -> None:
    result = run(commands(vault, jsonl, tmp_path / "out")[command])
    assert result.exit_code == 0, result.output
    drawn = terminal.getvalue()
    assert STAGES[command] in drawn
    assert BAR in drawn
    assert "\x1b" not in result.stdout
    assert BAR not in result.stdout


@pytest.mark.usefixtures("hashing_embedder")
@pytest.mark.parametrize("command", LONG_COMMANDS)
def test_json_output_has_no_bar_even_on_a_terminal(
    command: str, vault: Path, jsonl: Path, tmp_path: Path, terminal: io.StringIO
) -> None:
    result = run([*commands(vault, jsonl, tmp_path / "out")[command], "--json"])
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    assert terminal.getvalue() == ""


@pytest.mark.usefixtures("hashing_embedder")
def test_search_embeds_what_is_pending_before_it_searches(vault: Path, jsonl: Path) -> None:
    run(commands(vault, jsonl, vault.parent)["kg import"])
    result = run(["kg", "search", str(vault), "tool3", "--user", "ann", "--json"])
    assert result.exit_code == 0, result.output
    with mangostore.open(vault, passphrase=PASSPHRASE) as db:
        assert db.query("SELECT count(*) FROM kg_embedding_queue")[0][0] == 0
        assert db.query("SELECT count(*) FROM kg_embeddings")[0][0] == 6  # fish and 5 tools


def test_progress_bar_yields_nothing_without_a_terminal_or_with_json(
    terminal: io.StringIO,
) -> None:
    with progress_bar(as_json=True) as bar:
        assert bar is None
    with progress_bar() as bar:
        assert bar is not None
        bar(0, None, "stage one")
        bar(2, 4, "stage one")
        bar(4, 4, "stage one")
    assert "stage one" in terminal.getvalue()


def test_rotate_keys_reports_what_it_did(vault: Path) -> None:
    result = run(["rotate-keys", str(vault), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["keys_created"] == 1
    assert report["values_reencrypted"] >= 1
    assert report["unreadable"] == []
    again = run(["rotate-keys", str(vault)])
    assert again.exit_code == 0, again.output
    assert "Users given a new key: 1 (old keys retired: 1)" in again.stdout
    with mangostore.open(vault, passphrase=PASSPHRASE) as db:
        assert db.users.get_by_username("ann").security_profile == {"pin": "1234"}


def test_rotate_keys_refuses_a_database_without_field_keys(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    mangostore.create(path, encrypted=False).db.close()
    result = run(["rotate-keys", str(path)])
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"error: {path} is unencrypted and has no field keys: there is nothing to rotate\n"
    )


def test_a_bar_of_bytes_shows_sizes_and_a_rate(terminal: io.StringIO) -> None:
    with progress_bar(units="bytes") as report:
        assert report is not None
        report(0, 4_000_000, "writing")
        report(2_000_000, 4_000_000, "writing")
    drawn = terminal.getvalue()
    assert "writing" in drawn
    assert "MB" in drawn  # sizes, where a bar of items shows 2000000/4000000
    assert "2000000/4000000" not in drawn
