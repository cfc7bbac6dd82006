"""The API reference (docs/reference/, rendered by mkdocstrings from the docstrings) leaves
out no public name: every name in `livingai.__all__` and in each public package's
`__all__` is on one of its pages, and every page of docs/ is in mkdocs.yml's nav (the
strict build fails on a page left out, so this says which)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = ROOT / "docs"
PACKAGES = (
    "livingai",
    "livingai.adapters.langgraph",
    "livingai.adapters.openai_agents",
    "livingai.adapters.crewai",
    "livingai.adapters.pydantic_ai",
    "livingai.web",
)


def all_of(package: str) -> list[str]:
    """A package's `__all__`, read from its source (the frameworks need not be installed)."""
    source = ROOT.joinpath("src", *package.split("."), "__init__.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"{package} has no __all__")


def documented() -> set[str]:
    """Every object a reference page renders (`::: livingai.Runtime`)."""
    found: set[str] = set()
    for page in (DOCS / "reference").glob("*.md"):
        found.update(re.findall(r"^::: ([\w.]+)$", page.read_text(), re.MULTILINE))
    return found


def test_every_public_name_is_in_the_reference() -> None:
    shown = documented()
    missing = [
        f"{package}.{name}"
        for package in PACKAGES
        for name in all_of(package)
        if f"{package}.{name}" not in shown and not name.startswith("__")
    ]
    assert missing == [], f"add to a page of docs/reference/: {missing}"


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    listed = set(re.findall(r"^\s*- (?:[^:\n]+: )?([\w/.-]+\.md)$", nav, re.MULTILINE))
    pages = {str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md")}
    assert pages - listed == set(), "not in mkdocs.yml's nav"
    assert listed - pages == set(), "in mkdocs.yml's nav but not in docs/"
