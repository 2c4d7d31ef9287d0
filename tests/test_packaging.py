"""What a package index and a new user see: license, metadata, links, and a lean `make demo`."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_license_is_apache_2_and_declared() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    project = PYPROJECT["project"]

    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "Copyright the mangostore authors" in text
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    # PEP 639: a license expression replaces the license classifiers.
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]


def test_the_metadata_describes_the_project() -> None:
    project = PYPROJECT["project"]

    assert project["readme"] == {"file": "README.md", "content-type": "text/markdown"}
    assert "Programming Language :: Python :: 3.11" in project["classifiers"]
    assert "Topic :: Database" in project["classifiers"]
    assert project["authors"]


def test_every_relative_link_of_the_readme_exists() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    relative = [link for link in links if "://" not in link]

    assert relative
    missing = [link for link in relative if not (ROOT / link).exists()]
    assert not missing


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_installs_no_development_tools(tmp_path: Path) -> None:
    venv = tmp_path / "venv"

    def planned(target: str) -> str:
        result = subprocess.run(
            ["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return result.stdout

    def extras(plan: str) -> list[set[str]]:
        """The extras of each editable install the plan makes (``-e '.[a,b]'``)."""
        found = re.findall(r"pip install .*-e '\.\[([^\]]*)\]'", plan)
        return [set(group.split(",")) for group in found]

    demo, test = planned("demo"), planned("test")

    assert extras(demo)
    assert not [group for group in extras(demo) if "dev" in group]
    assert "mangostore demo" in demo
    assert [group for group in extras(test) if "dev" in group]
