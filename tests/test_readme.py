"""The README's Python tour runs, block after block, as a reader would type it."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_the_readme_has_a_python_tour() -> None:
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 4


def test_the_python_tour_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for number, block in enumerate(python_blocks(README.read_text(encoding="utf-8")), 1):
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the diagnosis
            pytest.fail(f"README python block {number} failed: {exc!r}\n{block}")
    db = namespace["db"]
    db.close()  # type: ignore[attr-defined]
