"""The pages: server-rendered HTML over the same reads as the API, and the forms that
replay, fork, resume and log in. A form that fails shows its page again with the error."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from livingai import ExecutionNotFoundError

from . import actions, data
from .auth import COOKIE
from .data import BadInput
from .state import ui_of
from .templates import render, root_of

router = APIRouter(include_in_schema=False)


async def form_of(request: Request) -> dict[str, str]:
    """An url-encoded form's fields (the first value of each)."""
    body = (await request.body()).decode("utf-8", "replace")
    return {name: values[0] for name, values in parse_qs(body, keep_blank_values=True).items()}


def see(request: Request, path: str) -> RedirectResponse:
    """303 to `path`, a path of this app."""
    return RedirectResponse(root_of(request) + path, status_code=303)


@router.get("/", response_class=HTMLResponse)
async def executions(request: Request, query: Annotated[data.ListQuery, Depends()]) -> Response:
    ui = ui_of(request)
    given = query.given()
    try:
        filters = data.Filters.of(**given)
    except BadInput as exc:
        shown = {name: value or "" for name, value in given.items()}
        return render(
            request, "executions.html", 422, page=None, filters=shown, error=str(exc), links={}
        )
    found = await data.page(ui.open_runtime(), filters, cursor=query.cursor)
    links = found.to_dict(filters, root_of(request) + "/")
    return render(
        request,
        "executions.html",
        page=found,
        filters={name: value or "" for name, value in given.items()},
        error=None,
        links={"next": links["next"], "newest": links["newest"]},
    )


async def execution_page(
    request: Request, execution_id: str, error: str | None = None, status_code: int = 200
) -> Response:
    ui = ui_of(request)
    runtime = ui.open_runtime()
    shown = await data.execution(runtime, execution_id)
    run = shown["run"]
    agent = run["agent"] if run is not None else None
    return render(
        request,
        "execution.html",
        status_code,
        e=shown,
        tree=data.nested(shown["nodes"]),
        timeline=data.timeline(shown["nodes"]),
        related=await data.related(runtime, execution_id),
        steps=[node for node in shown["nodes"] if node["position"] is not None],
        registered=agent is not None and agent in ui.agents,
        modes=list(actions.MODES),
        events_url=None if shown["finished"] else events_path(request, execution_id, shown),
        error=error,
    )


def events_path(request: Request, execution_id: str, shown: dict[str, Any]) -> str:
    """Where a live page follows the execution, from the versions it was drawn with."""
    quoted = quote(execution_id, safe="")
    return f"{root_of(request)}/api/executions/{quoted}/events?after={shown['versions']}"


@router.get("/executions/{execution_id}", response_class=HTMLResponse)
async def execution(request: Request, execution_id: str) -> Response:
    return await execution_page(request, execution_id)


async def acted(request: Request, execution_id: str, act: Any) -> Response:
    """Check the token and CSRF token, run the action, and go to the execution it made;
    bad input shows the execution's page again with the error."""
    ui = ui_of(request)
    form = await form_of(request)
    ui.guard.check(request, csrf=form.get("csrf", ""))
    try:
        outcome = await act(form)
    except BadInput as exc:
        return await execution_page(request, execution_id, str(exc), 422)
    except HTTPException as exc:
        if exc.status_code == 403:
            raise
        return await execution_page(request, execution_id, str(exc.detail), exc.status_code)
    return see(request, data.execution_path(str(outcome["execution_id"])))


@router.post("/executions/{execution_id}/replay")
async def replay(request: Request, execution_id: str) -> Response:
    ui = ui_of(request)

    async def act(form: dict[str, str]) -> dict[str, Any]:
        mode = form.get("mode", "")
        counterfactual = mode.strip().lower() == "counterfactual"
        value = actions.json_value(form.get("value")) if counterfactual else None
        return await actions.replay(
            ui,
            execution_id,
            mode,
            actions.step_of(form.get("step")),
            value,
            counterfactual,
            bool(form.get("mock_llm")),
        )

    return await acted(request, execution_id, act)


@router.post("/executions/{execution_id}/fork")
async def fork(request: Request, execution_id: str) -> Response:
    ui = ui_of(request)

    async def act(form: dict[str, str]) -> dict[str, Any]:
        step = actions.step_of(form.get("step"))
        return await actions.fork(ui, execution_id, step, bool(form.get("run")))

    return await acted(request, execution_id, act)


@router.post("/executions/{execution_id}/resume")
async def resume(request: Request, execution_id: str) -> Response:
    ui = ui_of(request)
    form = await form_of(request)
    ui.guard.check(request, csrf=form.get("csrf", ""))
    try:
        await actions.resume(ui, execution_id)  # its page shows how it went, live if running
    except (BadInput, HTTPException) as exc:
        if isinstance(exc, HTTPException) and exc.status_code == 403:
            raise
        message = str(exc.detail) if isinstance(exc, HTTPException) else str(exc)
        code = exc.status_code if isinstance(exc, HTTPException) else 422
        return await pending_page(request, message, code)
    return see(request, data.execution_path(execution_id))


@router.get("/diff", response_class=HTMLResponse)
async def diff(request: Request, a: str | None = None, b: str | None = None) -> Response:
    a, b = data.blank(a), data.blank(b)
    compared = None
    error = None
    status = 200
    if a is not None and b is not None:
        try:
            compared = await data.diff(ui_of(request).open_runtime(), a, b)
        except ExecutionNotFoundError as exc:
            error, status = str(exc), 404
    return render(request, "diff.html", status, a=a or "", b=b or "", d=compared, error=error)


@router.get("/costs", response_class=HTMLResponse)
async def costs(request: Request, since: str | None = None, until: str | None = None) -> Response:
    runtime = ui_of(request).open_runtime()
    try:
        low, high = data.moment("since", since), data.moment("until", until)
    except BadInput as exc:
        return render(
            request,
            "costs.html",
            422,
            groups={},
            chart=None,
            since=since or "",
            until=until or "",
            error=str(exc),
        )
    groups = {by: await data.costs(runtime, by, low, high) for by in data.COST_GROUPS}
    return render(
        request,
        "costs.html",
        groups=groups,
        chart=data.chart(groups["day"]),
        since=since or "",
        until=until or "",
        error=None,
    )


async def pending_page(
    request: Request, error: str | None = None, status_code: int = 200
) -> Response:
    ui = ui_of(request)
    runs = await data.pending(ui.open_runtime(), list(ui.agents))
    return render(request, "pending.html", status_code, runs=runs, error=error)


@router.get("/pending", response_class=HTMLResponse)
async def pending(request: Request) -> Response:
    return await pending_page(request)


def local_path(request: Request, target: str | None) -> str:
    """Where to go after logging in: a path of this app only, never another site."""
    root = root_of(request)
    if not target or not target.startswith(root + "/") or target.startswith("//") or "\\" in target:
        return root + "/"
    return target


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", next=local_path(request, next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    ui = ui_of(request)
    form = await form_of(request)
    target = local_path(request, form.get("next"))
    if not ui.guard.allow_actions:
        raise HTTPException(403, "read-only: this UI was started without --allow-actions")
    if not ui.guard.token_matches(form.get("token", "")):
        return render(request, "login.html", 403, next=target, error="that is not the token")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        ui.guard.new_session(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    ui = ui_of(request)
    form = await form_of(request)
    ui.guard.check(request, csrf=form.get("csrf", ""))
    response = see(request, "/")
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
