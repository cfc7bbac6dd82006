"""The README's quickstarts, as code to run: each is the Python block between the markers
`<!-- --8<-- [start:quickstart-NAME] -->` and `<!-- --8<-- [end:quickstart-NAME] -->`
(the same markers put it on the site's Getting started page, through pymdownx.snippets).

`run_quickstart` runs one as a user would paste it into a file: in a directory of its
own, as `__main__`, its output captured. The tests of each run it in the venv that has
its framework and put a scripted model where it names a real one."""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(
    r"<!-- --8<-- \[start:quickstart-(?P<name>[\w-]+)\] -->\n"
    r"```python\n(?P<code>.*?)```\n"
    r"<!-- --8<-- \[end:quickstart-(?P=name)\] -->",
    re.DOTALL,
)
NAMES = ("durable", "langgraph", "openai-agents", "crewai", "pydantic-ai")  # each tested


def quickstarts() -> dict[str, str]:
    """Every quickstart in the README, by name, in the README's order."""
    return {match["name"]: match["code"] for match in BLOCK.finditer(README.read_text())}


def quickstart(name: str) -> str:
    found = quickstarts()
    assert name in found, f"README.md has no quickstart {name!r} (it has {sorted(found)})"
    return found[name]


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[io.StringIO]:
    """`folder` as the current directory (the quickstarts' files go there) and what is
    printed meanwhile."""
    out, here = io.StringIO(), Path.cwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out):
            yield out
    finally:
        os.chdir(here)


def run_quickstart(name: str, folder: Path) -> tuple[str, dict[str, Any]]:
    """Run quickstart `name` inside `folder`; return what it printed and the names it
    defined (to run its `main` again, say)."""
    code = compile(quickstart(name), f"README.md:quickstart-{name}", "exec")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    with inside(folder) as out:
        exec(code, namespace)
    return out.getvalue(), namespace
