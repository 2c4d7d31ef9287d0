"""The ``mangostore`` command line, driven through click's test runner."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from tests.conftest import PASSPHRASE

import mangostore
from mangostore.cli import cli, common
from mangostore.keys.keyring import keyring_path

#: The cheapest Argon2id parameters the library accepts: keeps these tests fast.
FAST_KDF = ["--kdf-memory-kib", "19456", "--kdf-iterations", "2", "--kdf-parallelism", "1"]
RECOVERY_KEY = re.compile(r"\b[A-Z2-7]{4}(?:-[A-Z2-7]{1,4}){12}\b")
HEX_KEY = re.compile(r"\b[0-9a-fA-F]{64}\b")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def run(
    args: list[str],
    *,
    passphrase: str | None = PASSPHRASE,
    recovery_key: str | None = None,
    input: str | None = None,
) -> Result:
    """Invoke the CLI with exactly the given secrets in the environment (None: unset)."""
    env = {common.PASSPHRASE_ENV: passphrase, common.RECOVERY_KEY_ENV: recovery_key}
    return CliRunner().invoke(cli, args, env=env, input=input)


def assert_one_line_error(result: Result, *, contains: str = "") -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    assert contains.lower() in lines[0].lower()
    return lines[0]


def status_json(path: Path, **kwargs: Any) -> dict[str, Any]:
    result = run(["status", "--json", str(path)], **kwargs)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def write_key_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def initialised(db_path: Path) -> tuple[Path, str]:
    """An encrypted database made by ``mangostore init``, and its recovery key."""
    result = run(["init", str(db_path), *FAST_KDF])
    assert result.exit_code == 0, result.output
    keys = RECOVERY_KEY.findall(result.stdout)
    assert len(keys) == 1, result.stdout
    return db_path, keys[0]


@pytest.fixture
def interactive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend standard input is a terminal, so the CLI prompts."""
    monkeypatch.setattr(common, "stdin_is_interactive", lambda: True)


# -- init and status ---------------------------------------------------------------------------


def test_init_shows_the_recovery_key_exactly_once(db_path: Path) -> None:
    result = run(["init", str(db_path), *FAST_KDF])

    assert result.exit_code == 0, result.output
    (key,) = RECOVERY_KEY.findall(result.output)
    assert result.output.count(key) == 1
    assert "shown only this once" in result.stdout
    assert PASSPHRASE not in result.output
    assert db_path.exists()
    assert keyring_path(db_path).exists()


def test_status_shows_no_key_material(initialised: tuple[Path, str]) -> None:
    path, recovery_key = initialised
    ring = json.loads(keyring_path(path).read_text())
    secrets = [
        ring["master"]["passphrase"],
        ring["master"]["recovery"],
        ring["mac"],
        ring["kdf"]["salt"],
        recovery_key,
        PASSPHRASE,
    ]

    text = run(["status", str(path)])
    as_json = run(["status", "--json", str(path)])

    for result in (text, as_json):
        assert result.exit_code == 0, result.output
        for secret in secrets:
            assert secret not in result.output
        assert not RECOVERY_KEY.search(result.output)
        assert not HEX_KEY.search(result.output)
    assert "Schema version" in text.stdout
    assert ring["vault_id"] in text.stdout
    assert "command_history" in text.stdout


def test_status_json_describes_the_database(initialised: tuple[Path, str]) -> None:
    path, _ = initialised

    data = status_json(path)

    assert data["schema_version"] == data["latest_version"] > 0
    assert data["page_encryption"] is True
    assert data["field_encryption"] is True
    assert data["file_bytes"] > 0
    assert data["keyring"]["kdf"] == {
        "alg": "argon2id",
        "memory_kib": 19456,
        "iterations": 2,
        "parallelism": 1,
    }
    assert json.loads(keyring_path(path).read_text())["vault_id"] == data["keyring"]["vault_id"]
    tables = {t["name"]: t["rows"] for t in data["tables"]}
    assert tables["users"] == 0
    assert "pool" not in data


def test_init_refuses_an_existing_database(initialised: tuple[Path, str]) -> None:
    path, _ = initialised
    before = keyring_path(path).read_bytes()

    result = run(["init", str(path), *FAST_KDF])

    assert_one_line_error(result, contains="already exists")
    assert keyring_path(path).read_bytes() == before


def test_init_asks_for_the_passphrase_twice(db_path: Path, interactive: None) -> None:
    result = run(
        ["init", str(db_path), *FAST_KDF], passphrase=None, input="s3cret words\ns3cret words\n"
    )

    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert status_json(db_path, passphrase="s3cret words")["page_encryption"] is True


def test_init_refuses_kdf_parameters_below_the_floor(db_path: Path) -> None:
    result = run(["init", str(db_path), "--kdf-memory-kib", "1024"])

    assert result.exit_code == 2
    assert "--kdf-memory-kib" in result.output
    assert not db_path.exists()


# -- errors ------------------------------------------------------------------------------------


def test_wrong_passphrase_is_one_line_and_exit_1(initialised: tuple[Path, str]) -> None:
    path, _ = initialised

    result = run(["status", str(path)], passphrase="not it")

    line = assert_one_line_error(result, contains="wrong passphrase")
    assert "not it" not in line
    assert result.stdout == ""


def test_missing_keyring(initialised: tuple[Path, str]) -> None:
    path, _ = initialised
    keyring_path(path).unlink()

    assert_one_line_error(run(["status", str(path)]), contains="keyring")


def test_random_bytes_are_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "noise.db"
    path.write_bytes(os.urandom(8192))

    assert_one_line_error(run(["status", str(path)]))
    assert_one_line_error(run(["status", "--plain", str(path)]), contains="not a readable")


def test_no_passphrase_and_no_terminal_fails_at_once(initialised: tuple[Path, str]) -> None:
    path, _ = initialised

    result = run(["status", str(path)], passphrase=None)

    assert_one_line_error(result, contains="no passphrase given")


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    result = run(["status", str(tmp_path / "absent.db")])

    assert result.exit_code == 2


def test_interrupt_exits_130_quietly(
    initialised: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = initialised

    def interrupted(*args: object, **kwargs: object) -> mangostore.Database:
        raise KeyboardInterrupt

    monkeypatch.setattr(mangostore, "open", interrupted)
    result = run(["status", str(path)])

    assert result.exit_code == 130
    assert result.output.strip() == ""


# -- plain databases ---------------------------------------------------------------------------


def test_plain_database(db_path: Path) -> None:
    created = run(["init", "--plain", str(db_path)], passphrase=None)
    assert created.exit_code == 0, created.output
    assert not RECOVERY_KEY.search(created.output)
    assert not keyring_path(db_path).exists()

    result = run(["status", "--plain", "--json", str(db_path)], passphrase=None)

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["page_encryption"] is False
    assert data["field_encryption"] is False
    assert data["keyring"] is None
    # Without --plain, the database is recognised before any passphrase is asked for.
    assert_one_line_error(run(["status", str(db_path)], passphrase=None), contains="--plain")
    assert_one_line_error(run(["passwd", str(db_path)]), contains="no passphrase to change")


def test_encrypted_database_refuses_plain(initialised: tuple[Path, str]) -> None:
    path, _ = initialised

    assert_one_line_error(run(["status", "--plain", str(path)]), contains="passphrase")


def test_plain_with_key_file_is_a_usage_error(
    initialised: tuple[Path, str], tmp_path: Path
) -> None:
    path, _ = initialised
    key_file = write_key_file(tmp_path / "key", PASSPHRASE)

    result = run(["status", "--plain", "--key-file", str(key_file), str(path)])

    assert result.exit_code == 2


# -- key files ---------------------------------------------------------------------------------


def test_key_file_takes_precedence_over_the_environment(db_path: Path, tmp_path: Path) -> None:
    key_file = write_key_file(tmp_path / "key", "from the file\n")

    created = run(["init", "--key-file", str(key_file), str(db_path), *FAST_KDF], passphrase="env")

    assert created.exit_code == 0, created.output
    # One trailing newline is not part of the passphrase.
    assert status_json(db_path, passphrase="from the file")["schema_version"] > 0
    assert_one_line_error(run(["status", str(db_path)], passphrase="env"))
    with_both = run(["status", "--key-file", str(key_file), str(db_path)], passphrase="env")
    assert with_both.exit_code == 0, with_both.output


def test_empty_key_file_is_refused(initialised: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = initialised
    key_file = write_key_file(tmp_path / "key", "\n")

    result = run(["status", "--key-file", str(key_file), str(path)])

    assert_one_line_error(result, contains="empty")


# -- passwd ------------------------------------------------------------------------------------


def test_passwd_changes_the_passphrase(initialised: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = initialised
    new_key = write_key_file(tmp_path / "new", "a brand new passphrase\n")

    result = run(["passwd", "--new-key-file", str(new_key), str(path)])

    assert result.exit_code == 0, result.output
    assert_one_line_error(run(["status", str(path)]), contains="wrong passphrase")
    data = status_json(path, passphrase="a brand new passphrase")
    # Left out, the KDF options keep the database's current cost.
    assert data["keyring"]["kdf"]["memory_kib"] == 19456


def test_passwd_prompts_for_the_new_passphrase_twice(
    initialised: tuple[Path, str], interactive: None
) -> None:
    path, _ = initialised

    result = run(["passwd", str(path)], input="typed twice\ntyped twice\n")

    assert result.exit_code == 0, result.output
    assert "typed twice" not in result.output
    assert status_json(path, passphrase="typed twice")["schema_version"] > 0


def test_passwd_with_a_wrong_current_passphrase_changes_nothing(
    initialised: tuple[Path, str], tmp_path: Path
) -> None:
    path, _ = initialised
    before = keyring_path(path).read_bytes()
    new_key = write_key_file(tmp_path / "new", "whatever")

    result = run(["passwd", "--new-key-file", str(new_key), str(path)], passphrase="wrong")

    assert_one_line_error(result, contains="wrong passphrase")
    assert keyring_path(path).read_bytes() == before


def test_passwd_with_the_recovery_key(initialised: tuple[Path, str], tmp_path: Path) -> None:
    path, recovery_key = initialised
    new_key = write_key_file(tmp_path / "new", "recovered passphrase")

    result = run(
        ["passwd", "--recovery", "--new-key-file", str(new_key), str(path)],
        passphrase=None,
        recovery_key=recovery_key.lower(),
    )

    assert result.exit_code == 0, result.output
    assert recovery_key not in result.output
    assert status_json(path, passphrase="recovered passphrase")["schema_version"] > 0
    assert_one_line_error(run(["status", str(path)]), contains="wrong passphrase")


def test_passwd_with_a_wrong_recovery_key(initialised: tuple[Path, str], tmp_path: Path) -> None:
    path, recovery_key = initialised
    new_key = write_key_file(tmp_path / "new", "whatever")
    wrong = ("B" if recovery_key[0] == "A" else "A") + recovery_key[1:]

    result = run(
        ["passwd", "--recovery", "--new-key-file", str(new_key), str(path)], recovery_key=wrong
    )

    line = assert_one_line_error(result, contains="recovery key")
    assert wrong not in line
    assert status_json(path)["schema_version"] > 0


def test_passwd_can_strengthen_the_kdf(initialised: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = initialised
    new_key = write_key_file(tmp_path / "new", "stronger")

    result = run(
        ["passwd", "--new-key-file", str(new_key), "--kdf-iterations", "3", str(path)],
    )

    assert result.exit_code == 0, result.output
    kdf = status_json(path, passphrase="stronger")["keyring"]["kdf"]
    assert (kdf["memory_kib"], kdf["iterations"], kdf["parallelism"]) == (19456, 3, 1)


# -- migrate -----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_migrate_down_and_up_again(initialised: tuple[Path, str]) -> None:
    path, _ = initialised
    latest = status_json(path)["latest_version"]

    down = run(["migrate", "--to", "0", "--yes", str(path)])

    assert down.exit_code == 0, down.output
    assert "Reverted" in down.stdout
    assert status_json(path)["schema_version"] == 0

    up = run(["migrate", str(path)])

    assert up.exit_code == 0, up.output
    assert "Applied" in up.stdout
    assert status_json(path)["schema_version"] == latest


def test_migrate_with_nothing_to_do(initialised: tuple[Path, str]) -> None:
    path, _ = initialised

    result = run(["migrate", str(path)])

    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.stdout


def test_migrate_to_an_unknown_version(initialised: tuple[Path, str]) -> None:
    path, _ = initialised

    assert_one_line_error(run(["migrate", "--to", "9999", str(path)]), contains="no migration")


# -- demo, version, docs -----------------------------------------------------------------------


def test_demo_runs_without_asking_anything() -> None:
    result = run(["demo"], passphrase=None)

    assert result.exit_code == 0, result.output
    assert "appears nowhere" in result.stdout
    assert "command_history" in result.stdout


def test_version() -> None:
    result = run(["--version"])

    assert result.exit_code == 0
    assert mangostore.__version__ in result.stdout


def _commands(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, f"{path} {name}")


def _doc_sections() -> dict[str, str]:
    """Map each documented command (from its ``## `mangostore ...` `` heading) to its text."""
    sections: dict[str, str] = {}
    current: str | None = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^#{2,4} `(mangostore[^`]*)`\s*$", line)
        if heading:
            current = heading.group(1)
            sections[current] = ""
        elif line.startswith("#"):
            current = None
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def test_every_command_and_option_is_documented() -> None:
    sections = _doc_sections()
    missing: list[str] = []
    for path, command in _commands(cli, "mangostore"):
        text = sections.get(path)
        if text is None:
            missing.append(f"section for `{path}`")
            continue
        for param in command.params:
            names = [o for o in param.opts if o.startswith("--")] or [param.human_readable_name]
            for name in names:
                if name != "--help" and name not in text:
                    missing.append(f"{name} of `{path}`")
    assert not missing, f"docs/cli.md lacks: {', '.join(missing)}"
