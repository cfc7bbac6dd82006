"""The app: `create_app(store_url, ...)` builds the FastAPI application that `livingai ui`
serves, and that a service of one's own may mount. The runtime over the store is opened
in the app's lifespan and closed at shutdown.

Every response carries a strict Content-Security-Policy (scripts and styles from /static
only, nothing from elsewhere), and errors are one message naming what was wrong: JSON
under /api/, a page elsewhere; passwords of the store URL never reach either."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livingai import (
    ConfigError,
    ExecutionNotFoundError,
    FencedError,
    InDoubtError,
    LeaseHeldError,
    LivingAIError,
    NondeterminismError,
    StepNotFoundError,
    __version__,
)

from . import api, pages
from .auth import Guard
from .data import BadInput
from .state import Ui, logger
from .templates import HERE, render

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
LIVE_SECONDS = 600.0  # a live stream ends after this; the browser connects again
STOP_SECONDS = 5.0  # background runs get this long to finish at shutdown


def create_app(
    store_url: str,
    *,
    agents: Mapping[str, Callable[..., Any]] | Sequence[Callable[..., Any]] = (),
    allow_actions: bool = False,
    token: str | None = None,
    live_seconds: float = LIVE_SECONDS,
) -> FastAPI:
    """The web UI over the store at `store_url`, as an ASGI app.

    Read-only unless `allow_actions`: then replays, forks and resumes need `token`
    (generated when not given; `app.state.token` holds it). `agents` are the agents it
    may run, by the name their runs recorded (a mapping) or by their function's name.
    A live page's event stream ends after `live_seconds` (the browser reconnects).

    Mounted in another app (`parent.mount("/livingai", app)`), its links start with the
    mount's path; the parent's lifespan should run this one's, so that the store is
    closed at shutdown: `async with app.router.lifespan_context(app): yield`."""
    if allow_actions and not token:
        token = secrets.token_urlsafe(24)
    named = dict(agents) if isinstance(agents, Mapping) else {fn.__name__: fn for fn in agents}
    ui = Ui(store_url, Guard(allow_actions, token or None), named, live_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ui.open_runtime()
        try:
            yield
        finally:
            try:
                await ui.stop_tasks(STOP_SECONDS)
            finally:
                runtime, ui.runtime = ui.runtime, None
                if runtime is not None:
                    await runtime.close()

    class Scrubbed(JSONResponse):
        """JSON with no trace of the store URL's passwords."""

        def render(self, content: Any) -> bytes:
            return ui.scrub(json.dumps(content, ensure_ascii=False, default=str)).encode()

    app = FastAPI(
        title="livingai",
        version=__version__,
        description="The executions livingai recorded: list, inspect, diff, costs, replay.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load their code from a CDN
        redoc_url=None,
        default_response_class=Scrubbed,
    )
    app.state.ui = ui
    app.state.token = token
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)

    async def failed(request: Request, exc: Exception) -> Response:
        return error_response(request, ui, exc)

    for kind in (HTTPException, RequestValidationError, LivingAIError, BadInput, Exception):
        app.add_exception_handler(kind, failed)
    return app


STATUS_OF: list[tuple[type[Exception], int]] = [
    (ExecutionNotFoundError, 404),
    (StepNotFoundError, 404),
    (BadInput, 422),
    (ConfigError, 422),
    (InDoubtError, 409),
    (LeaseHeldError, 409),
    (NondeterminismError, 409),
    (FencedError, 409),
    (LivingAIError, 500),
]


_WHERE = {"query", "path", "header", "body"}  # where FastAPI says a field is
_BRANCHES = {"int", "str", "float", "bool", "none", "list", "dict"}  # a union's members


def invalid(errors: Sequence[Mapping[str, Any]]) -> str:
    """FastAPI's validation errors as "<field>: <what is wrong>", one part a field: the
    field named by its own name, not by where it is, the union member that was tried or a
    tagged body's tag (`tags`); a wrong tag names the tag's field."""
    said: dict[str, list[str]] = {}
    for error in errors:
        context = error.get("ctx") or {}
        if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            names = [str(context.get("discriminator", "'body'")).strip("'")]
        else:
            names = [
                part
                for part in error.get("loc", ())
                if isinstance(part, str)
                and part not in _WHERE
                and part not in _BRANCHES
                and "-" not in part
                and part not in api.BODY_TAGS
            ]
        field = names[-1] if names else "body"
        said.setdefault(field, []).append(str(error.get("msg", "is not valid")))
    return "; ".join(f"{field}: {' / '.join(why)}" for field, why in said.items())


def error_response(request: Request, ui: Ui, exc: Exception) -> Response:
    """One message naming what was wrong: JSON for the API, a page for a person."""
    detail: Any
    if isinstance(exc, HTTPException):
        status, detail = exc.status_code, exc.detail
    elif isinstance(exc, RequestValidationError):
        status, detail = 422, invalid(exc.errors())
    else:
        status = next((code for kind, code in STATUS_OF if isinstance(exc, kind)), 500)
        detail = str(exc) if status != 500 or isinstance(exc, LivingAIError) else None
        if detail is None:
            logger.exception("the web UI failed on %s", request.url.path, exc_info=exc)
            detail = f"internal error: {type(exc).__name__} (see the server's log)"
    if isinstance(detail, str):
        detail = ui.scrub(detail)
    headers = dict(SECURITY_HEADERS)  # a 500 leaves by the outermost middleware, not ours
    if isinstance(exc, HTTPException) and exc.headers:
        headers.update(exc.headers)  # WWW-Authenticate on a 401
    if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)
    response = render(request, "error.html", status, status=status, message=str(detail))
    response.headers.update(headers)
    return response


class SecurityHeaders:
    """The security headers on every response, streams and static files included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if not static:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, sending)
