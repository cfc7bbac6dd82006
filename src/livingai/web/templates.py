"""Pages rendered on the server with Jinja2, autoescape always on: agent text is hostile,
so nothing shown is ever marked safe. Every page gets what the layout needs: the store
(password masked), whether actions are allowed, the session's CSRF token."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from livingai import human_reason

from .data import execution_path, millis, money, pretty
from .state import ui_of


def root_of(request: Request) -> str:
    """Where the app is mounted ("" at the top): every link starts with it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


HERE = Path(__file__).resolve().parent

environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.globals.update(
    pretty=pretty, money=money, millis=millis, link=execution_path, human_reason=human_reason
)
environment.filters["quote"] = lambda text: quote(str(text), safe="")


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template `name` as a response, with the layout's context."""
    ui = ui_of(request)
    root = root_of(request)
    page = environment.get_template(name).render(
        root=root,
        request_path=request.url.path,
        store=ui.masked_store,
        allow_actions=ui.guard.allow_actions,
        logged_in=ui.guard.logged_in(request),
        csrf=ui.guard.csrf_token(request),
        **context,
    )
    return HTMLResponse(ui.scrub(page), status_code=status_code)
