"""MkDocs hooks (mkdocs.yml `hooks:`): a module's docstring put into a page, read from the
source without importing it, so a page cannot drift from what the code says.

    <!-- docstring: livingai._stores.redis_keys -->        the docstring, as Markdown
    <!-- docstring-text: livingai._core.errors -->         the docstring, as a text block
    <!-- docstring: examples/00_demo.py -->                a file's, by its path

A module that is not there, or has no docstring, fails the build.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!-- (docstring|docstring-text): ([\w./]+) -->")


def docstring(module: str) -> str:
    if module.endswith(".py"):
        path = ROOT / module
    else:
        path = ROOT.joinpath("src", *module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    if not path.is_file():
        raise ValueError(f"docs: no module or file {module} in {ROOT}")
    text = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    if not text:
        raise ValueError(f"docs: module {module} ({path}) has no docstring")
    return text


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    def put(match: re.Match[str]) -> str:
        text = docstring(match[2])
        return text if match[1] == "docstring" else f"```text\n{text}\n```"

    return MARKER.sub(put, markdown)
