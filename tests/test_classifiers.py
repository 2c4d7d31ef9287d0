"""The package's classifiers are ones PyPI accepts, and say what the package is."""

from __future__ import annotations

import tomllib
from pathlib import Path

from trove_classifiers import classifiers, deprecated_classifiers

PROJECT = tomllib.loads(
    (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8")
)["project"]


def test_every_classifier_is_one_pypi_accepts() -> None:
    declared = PROJECT["classifiers"]

    assert [c for c in declared if c not in classifiers] == []
    assert [c for c in declared if c in deprecated_classifiers] == []
    assert declared == sorted(set(declared))


def test_the_classifiers_name_the_parts_a_user_installs() -> None:
    declared = set(PROJECT["classifiers"])

    # The pytest plugin (the pytest11 entry point) and the FastAPI servers.
    assert "mangostore" in PROJECT["entry-points"]["pytest11"]
    assert {"Framework :: Pytest", "Framework :: FastAPI"} <= declared
    assert "Topic :: System :: Archiving :: Backup" in declared
    assert {"knowledge graph", "vector search", "local-first"} <= set(PROJECT["keywords"])
