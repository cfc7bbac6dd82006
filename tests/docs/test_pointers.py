"""`livingai --help` and `python -m livingai` point to the documentation in the repository,
and what they name is there."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import livingai.__main__

ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_help_names_the_docs_and_how_to_serve_them() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "livingai", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "Documentation: docs/ in livingai's repository (start at docs/index.md)" in done.stdout
    assert 'pip install -e ".[docs]" && mkdocs serve' in done.stdout


def test_what_the_pointers_name_exists() -> None:
    named = {*re.findall(r"docs/[\w/-]+\.md", livingai.__main__.__doc__ or "")}
    assert named == {"docs/index.md", "docs/cli.md"}
    for path in (*named, "mkdocs.yml"):
        assert (ROOT / path).is_file(), path
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "docs" in project["optional-dependencies"]  # the extra the help installs
