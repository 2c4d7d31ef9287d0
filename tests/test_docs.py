"""Every ```python block of README.md and docs/*.md runs, and the values it shows are true.

How the documentation is tested, for whoever writes it:

- **A file is a story.** The python blocks of one file run in order, in one namespace,
  in a fresh temporary working directory: a later block uses the names an earlier one
  made (``db``, ``ann``), and a block may create ``mango.db`` without clashing with
  another file's.
- **Shown values are checked.** An expression statement followed by a ``# ->`` comment
  shows its value: ``db.memory.recall(ann, "shell")[0].value  # -> 'zsh'``. The test
  checks that ``repr(value)`` matches the text after ``# ->``, where ``...`` stands for
  any characters (ids, keys, times). It works at any depth (inside ``with`` and ``for``
  blocks too). Other comments are prose and are not checked; printed output is not
  checked either, so show a value with ``# ->`` rather than in a printed listing.
- **A block that cannot run here is marked,** with its reason, on the line just before
  its fence: ``<!-- docs-test: skip (needs a desktop notifier) -->``. Skipped blocks are
  counted and listed with their reasons as one skipped test (``pytest -ra`` shows it);
  a marker without a reason, or that does not stand before a python block, fails.
- **Pseudo-code is not fenced as python**: every python block must compile.
- Snippets create and open databases with the cheapest Argon2id parameters the library
  accepts (the ``FAST_KDF`` of conftest), so the whole run takes seconds; the library's
  defaults are not changed.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import Any

import pytest
from tests.conftest import FAST_KDF

import mangostore
import mangostore.opening
from mangostore import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\S*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:(?P<text>.*?)-->\s*$")
SKIP = re.compile(r"^skip\s*\((?P<reason>.*)\)$")
#: Fence languages that would hide a python block from this test.
NOT_QUITE_PYTHON = {"py", "python3", "pycon", "ipython"}
SHOWN = "# ->"
#: The name the check of a ``# ->`` comment has in a snippet's namespace.
CHECK = "__docs_check__"


@dataclass(frozen=True)
class Block:
    """One python block: where it is, its code, and why it is skipped (``None``: it runs)."""

    name: str  # the file, relative to the repository
    line: int  # the line of the opening fence, 1-based
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        """The file and the line of the opening fence."""
        return f"{self.name}:{self.line}"


def read_blocks(text: str, name: str) -> tuple[list[Block], list[str]]:
    """The python blocks of the markdown ``text`` of file ``name``, and what is wrong
    with its fences and ``docs-test`` markers."""
    lines = text.splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    marker: tuple[int, str] | None = None  # (line, text) waiting for its block
    number = 0
    while number < len(lines):
        fence, found = FENCE.match(lines[number]), MARKER.match(lines[number])
        if found:
            if marker is not None:
                problems.append(f"{name}:{marker[0]}: a docs-test marker with no block after it")
            marker = (number + 1, found.group("text").strip())
        elif fence:
            end = number + 1
            while end < len(lines) and not lines[end].lstrip().startswith("```"):
                end += 1
            lang = fence.group("lang")
            if lang == "python":
                skip = None
                if marker is not None:
                    parsed = SKIP.match(marker[1])
                    skip = parsed.group("reason").strip() if parsed else ""
                    if not skip:
                        problems.append(
                            f"{name}:{marker[0]}: write the marker as "
                            "`<!-- docs-test: skip (the reason) -->`, with a reason"
                        )
                        skip = None
                indent = len(fence.group("indent"))
                code = "".join(line[indent:] + "\n" for line in lines[number + 1 : end])
                blocks.append(Block(name, number + 1, code, skip))
            elif marker is not None:
                problems.append(f"{name}:{marker[0]}: a docs-test marker before a non-python block")
            if lang in NOT_QUITE_PYTHON:
                problems.append(f"{name}:{number + 1}: fence python code as ```python")
            marker = None
            number = end
        elif lines[number].strip() and marker is not None:
            problems.append(f"{name}:{marker[0]}: a docs-test marker not just before a block")
            marker = None
        number += 1
    if marker is not None:
        problems.append(f"{name}:{marker[0]}: a docs-test marker with no block after it")
    return blocks, problems


def document_blocks(document: Path) -> tuple[list[Block], list[str]]:
    """The python blocks of one file of the repository, and its marker problems."""
    return read_blocks(document.read_text(encoding="utf-8"), str(document.relative_to(ROOT)))


ALL_BLOCKS = [block for document in DOCUMENTS for block in document_blocks(document)[0]]
STORIES = [document for document in DOCUMENTS if document_blocks(document)[0]]


def shown_values(code: str) -> dict[int, str]:
    """The ``# ->`` comments of ``code``: the text each shows, by line."""
    shown: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.COMMENT and token.string.startswith(SHOWN):
            shown[token.start[0]] = token.string[len(SHOWN) :].strip()
    return shown


class _CheckShown(ast.NodeTransformer):
    """Turn ``expr  # -> text`` into ``__docs_check__(expr, text, "file:line")``."""

    def __init__(self, name: str, shown: dict[int, str]) -> None:
        self.name = name
        self.shown = shown
        self.used: set[int] = set()

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        line = node.end_lineno
        if line is None or line not in self.shown:
            return node
        self.used.add(line)
        call = ast.Call(
            func=ast.Name(CHECK, ast.Load()),
            args=[node.value, ast.Constant(self.shown[line]), ast.Constant(f"{self.name}:{line}")],
            keywords=[],
        )
        return ast.copy_location(ast.Expr(call), node)


def compile_block(block: Block) -> CodeType:
    """Compile ``block`` with its ``# ->`` checks; errors and tracebacks name the lines of
    the file."""
    # Blank lines before the code put each of its lines at its line in the file.
    code = "\n" * block.line + block.code
    tree = ast.parse(code, filename=block.name)
    shown = shown_values(code)
    checker = _CheckShown(block.name, shown)
    tree = ast.fix_missing_locations(checker.visit(tree))
    stray = ", ".join(str(line) for line in sorted(set(shown) - checker.used))
    if stray:
        pytest.fail(f"{block.name}: line {stray}: a `# ->` comment must end an expression")
    return compile(tree, block.name, "exec")


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` is ``expected`` with each ``...`` standing for any characters."""
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual, flags=re.DOTALL) is not None


def check_shown(value: object, expected: str, where: str) -> None:
    """Fail unless ``repr(value)`` is what the ``# ->`` comment at ``where`` shows."""
    actual = repr(value)
    if not matches(expected, actual):
        pytest.fail(
            f"{where}: the doc shows\n    # -> {expected}\nbut the value is\n    {actual}",
            pytrace=False,
        )


@pytest.fixture
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``mangostore.create`` and ``open`` without ``settings=`` use ``FAST_KDF``."""
    monkeypatch.setattr(mangostore.opening, "Settings", functools.partial(Settings, kdf=FAST_KDF))


def close_databases(namespace: dict[str, Any]) -> None:
    """Close what a story left open, so no connection outlives its test."""
    for value in list(namespace.values()):
        if isinstance(value, mangostore.Database):
            value.close()


@pytest.mark.usefixtures("fast_kdf")
@pytest.mark.parametrize("document", STORIES, ids=lambda path: str(path.relative_to(ROOT)))
def test_the_python_blocks_run(
    document: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__docs__", CHECK: check_shown}
    try:
        for block in document_blocks(document)[0]:
            if block.skip is None:
                exec(compile_block(block), namespace)
    finally:
        close_databases(namespace)


def test_markers_and_fences_are_well_formed() -> None:
    problems = [problem for document in DOCUMENTS for problem in document_blocks(document)[1]]
    assert problems == []


def test_skipped_blocks_are_counted() -> None:
    skipped = [f"{block.where} ({block.skip})" for block in ALL_BLOCKS if block.skip]
    if skipped:
        pytest.skip(
            f"{len(skipped)} of {len(ALL_BLOCKS)} python blocks do not run: " + "; ".join(skipped)
        )


def test_the_documentation_has_python_blocks() -> None:
    assert len(ALL_BLOCKS) >= 15
    # The README's tour: the first thing a reader types, block after block.
    assert len([block for block in ALL_BLOCKS if block.name == "README.md"]) >= 4


@pytest.mark.usefixtures("fast_kdf")
def test_snippets_get_the_fast_kdf(tmp_path: Path) -> None:
    # Guards the speed of this module: a library that stops building its default
    # Settings where the fixture patches it would make every story slow, not wrong.
    with mangostore.create(tmp_path / "k.db", passphrase="p") as (db, _):
        assert db.keyring is not None
        assert db.keyring.kdf == FAST_KDF


MARKDOWN = """\
<!-- docs-test: skip (needs a desktop notifier (a real one)) -->
```python
notify()
```

<!-- docs-test: skip -->

```python
x = 1
```

  ```python
  indented = True
  ```

<!-- docs-test: skip (wrong place) -->
Some prose.

```sh
make test
```
```py
hidden = True
```
"""


def test_reading_blocks_and_markers() -> None:
    blocks, problems = read_blocks(MARKDOWN, "guide.md")
    assert [(b.line, b.code, b.skip) for b in blocks] == [
        (2, "notify()\n", "needs a desktop notifier (a real one)"),
        (8, "x = 1\n", None),
        (12, "indented = True\n", None),
    ]
    assert problems == [
        "guide.md:6: write the marker as `<!-- docs-test: skip (the reason) -->`, with a reason",
        "guide.md:16: a docs-test marker not just before a block",
        "guide.md:22: fence python code as ```python",
    ]


def test_shown_values_are_checked() -> None:
    block = Block("guide.md", 1, "x = [1, 2]\nx  # -> [1, ...]\nlen(x)  # -> 3\n", None)
    namespace: dict[str, Any] = {CHECK: check_shown}
    with pytest.raises(pytest.fail.Exception, match=r"guide.md:4: the doc shows"):
        exec(compile_block(block), namespace)


def test_a_shown_value_must_follow_an_expression() -> None:
    block = Block("guide.md", 1, "x = 1  # -> 1\n", None)
    with pytest.raises(pytest.fail.Exception, match=r"guide.md: line 2: a `# ->` comment"):
        compile_block(block)


def test_ellipsis_matches_anything() -> None:
    assert matches("'zsh'", "'zsh'")
    assert matches("User(..., username='ann', ...)", "User(id='0190', username='ann', x=1)")
    assert not matches("'zsh'", "'bash'")
    assert not matches("[1]", "[1, 2]")
