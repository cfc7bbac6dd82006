"""The JSON API under /api/: what the pages show, for programs. Reads are open; the
actions (replay, fork, resume) need the token (see auth)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, StringConstraints

from livingai import ExecutionNode, ExecutionNotFoundError

from . import actions, data
from .state import Ui, ui_of
from .templates import root_of

router = APIRouter(prefix="/api", tags=["api"])


class ErrorBody(BaseModel):
    """What every error answers: one line naming what was wrong."""

    detail: str = Field(description="what was wrong, in one line")


_WHY = {
    400: "the body is not JSON (UTF-8)",
    401: "no token shown (or a wrong one): send Authorization: Bearer <token>",
    403: "not allowed: this UI is read-only (started without --allow-actions)",
    404: "no such execution, node or step",
    409: "the execution's state does not allow it (not pending, not a run, its agent not "
    "registered, taken over)",
    422: "a parameter or the body is not what the schema says, or cannot be used: the "
    "message names it",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers an operation documents (each an ErrorBody)."""
    return {code: {"model": ErrorBody, "description": _WHY[code]} for code in codes}


bearer = HTTPBearer(auto_error=False, description="the token the UI was started with")
Text = Annotated[str, Path(min_length=1, pattern=data.NO_NUL)]  # a path part

POLL_SECONDS = 0.3  # how often a live stream looks for new versions
KEEPALIVE_POLLS = 50  # a comment line every so many polls keeps proxies from hanging up


def guarded(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """Actions only with the token: see auth.Guard.check."""
    ui_of(request).guard.check(request)


@router.get("/executions", responses=errors(422))
async def list_executions(
    request: Request, query: Annotated[data.ListQuery, Depends()]
) -> dict[str, Any]:
    """A page of executions, newest first, with the links to the next (older) page
    and to the newest; `stopped` when a filter ran out of time looking."""
    ui = ui_of(request)
    filters = data.Filters.of(**query.given())
    found = await data.page(ui.open_runtime(), filters, cursor=query.cursor)
    return found.to_dict(filters, root_of(request) + "/api/executions")


@router.get("/executions/{execution_id}", responses=errors(404, 422))
async def show_execution(request: Request, execution_id: Text) -> dict[str, Any]:
    """An execution: its summary, the run's record, its nodes (depth first), and its
    replays and forks."""
    runtime = ui_of(request).open_runtime()
    shown = await data.execution(runtime, execution_id)
    shown["related"] = await data.related(runtime, execution_id)
    return shown


@router.get("/executions/{execution_id}/nodes/{node_id:path}/state", responses=errors(404, 422))
async def node_state(request: Request, execution_id: Text, node_id: Text) -> dict[str, Any]:
    """A node's newest state, decoded: JSON, text, or base64 with its size."""
    return await data.state(ui_of(request).open_runtime(), execution_id, node_id)


@router.get("/executions/{execution_id}/events", responses=errors(404, 422))
async def execution_events(
    request: Request,
    execution_id: Text,
    after: int | None = None,
    last_event_id: str | None = Header(default=None),
) -> StreamingResponse:
    """Server-sent events while the execution runs: `node` for each new version of a
    node, `status` when the execution's status changes, `end` once it is finished.
    Versions after `after` (a count of versions, as the page had them) are sent; on a
    reconnection the browser's Last-Event-ID says where it was."""
    ui = ui_of(request)
    runtime = ui.open_runtime()
    versions = await runtime.engine.versions(execution_id)
    if not versions:
        raise ExecutionNotFoundError(f"no execution {execution_id!r} is stored")
    seen = len(versions) if after is None else after
    if last_event_id is not None and last_event_id.isdigit():
        seen = int(last_event_id)
    return StreamingResponse(
        live(ui, execution_id, max(seen, 0)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def event(kind: str, value: Any, event_id: int | None = None) -> str:
    lines = [f"event: {kind}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(value, ensure_ascii=True, default=str))
    return "\n".join(lines) + "\n\n"


def node_events(
    ui: Ui, versions: list[ExecutionNode], fresh: list[ExecutionNode], header_id: str
) -> Iterator[str]:
    """A `node` event for each of `fresh`, the last versions of `versions`, but the run's
    own record (its changes are `status` events), with its version number as the id."""
    for index, version in enumerate(fresh, start=len(versions) - len(fresh) + 1):
        if version.id != header_id:
            node = data.node_dict(version, 0, version.checkpoint is not None)
            yield event("node", ui_safe(ui, node), index)


async def live(ui: Ui, execution_id: str, seen: int) -> AsyncIterator[str]:
    """The event stream: polls the store every POLL_SECONDS, for at most the app's
    live_seconds, until the execution is finished (or the client goes: the response
    is cancelled then)."""
    runtime = ui.open_runtime()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ui.live_seconds
    header_id = data.run_node_of(execution_id)
    status: str | None = None
    yield "retry: 2000\n\n"
    polls = 0
    while True:
        versions = await runtime.engine.versions(execution_id)
        fresh = versions[seen:] if len(versions) >= seen else versions
        for line in node_events(ui, versions, fresh, header_id):
            yield line
        seen = len(versions)
        if fresh or status is None:
            shown = await data.execution(runtime, execution_id)
            if shown["finished"]:  # what landed since the versions were read goes first
                versions = await runtime.engine.versions(execution_id)
                for line in node_events(ui, versions, versions[seen:], header_id):
                    yield line
                seen = len(versions)
            if shown["status"] != status or fresh:
                status = shown["status"]
                run = shown["run"] or {}
                yield event(
                    "status",
                    ui_safe(
                        ui,
                        {
                            "status": status,
                            "finished": shown["finished"],
                            "result": run.get("result"),
                            "error": run.get("error"),
                        },
                    ),
                    seen,
                )
            if shown["finished"]:
                yield event("end", {"status": status})
                return
        if loop.time() > deadline:
            return  # the browser connects again, from the last event id
        polls += 1
        if polls % KEEPALIVE_POLLS == 0:
            yield ": keepalive\n\n"
        await asyncio.sleep(POLL_SECONDS)


def ui_safe(ui: Ui, value: dict[str, Any]) -> Any:
    """`value` with no trace of the store URL's passwords."""
    return json.loads(ui.scrub(json.dumps(value, default=str)))


@router.get("/diff", responses=errors(404, 422))
async def diff(
    request: Request,
    a: Annotated[str, Query(min_length=1, pattern=data.NO_NUL)],
    b: Annotated[str, Query(min_length=1, pattern=data.NO_NUL)],
) -> dict[str, Any]:
    """Executions `a` and `b` step by step, with the first divergence."""
    return await data.diff(ui_of(request).open_runtime(), a, b)


@router.get("/costs", responses=errors(422))
async def costs(
    request: Request,
    by: Literal["day", "model", "agent"] = "day",
    since: Annotated[str | None, Query(json_schema_extra=data.MOMENT_SCHEMA)] = None,
    until: Annotated[str | None, Query(json_schema_extra=data.MOMENT_SCHEMA)] = None,
) -> dict[str, Any]:
    """Tokens and dollars of model calls by day (UTC), model or agent."""
    rows = await data.costs(
        ui_of(request).open_runtime(),
        by,
        data.moment("since", since),
        data.moment("until", until),
    )
    return {"by": by, "rows": rows, "total": round(sum(row["cost"] for row in rows), 9)}


@router.get("/pending")
async def pending(request: Request) -> dict[str, Any]:
    """Runs that are unfinished and owned by no live worker (crashed, in doubt, forked)."""
    ui = ui_of(request)
    return {"items": await data.pending(ui.open_runtime(), list(ui.agents))}


Step = Annotated[
    int | Annotated[str, StringConstraints(pattern=r"\S")],
    Field(description="a position, a name or a node id"),
]


class MockTools(BaseModel):
    """Every tool served from the recording, the model run again."""

    mode: Literal["mock_tools"]
    step: Step | None = Field(default=None, description="ignored by this mode")
    value: Any = Field(default=None, description="ignored by this mode")
    mock_llm: bool = Field(default=False, description="serve the recorded model calls too")


class FromNode(BaseModel):
    """The recording served before `step`, everything run again from it."""

    mode: Literal["from_node"]
    step: Step
    value: Any = Field(default=None, description="ignored by this mode")
    mock_llm: bool = Field(default=False, description="serve the recorded model calls too")


class Counterfactual(BaseModel):
    """The recording with `step`'s result (a tool's) or input (a step's) replaced."""

    mode: Literal["counterfactual"]
    step: Step
    value: Any = Field(description="the step's new value, as JSON")
    mock_llm: bool = Field(default=False, description="serve the recorded model calls too")


ReplayBody = Annotated[MockTools | FromNode | Counterfactual, Field(discriminator="mode")]
BODY_TAGS = frozenset({"mock_tools", "from_node", "counterfactual"})  # where errors say


class ForkBody(BaseModel):
    step: Step = Field(description="the step to fork before: a position or a name")
    run: bool = Field(default=False, description="resume the fork with its agent at once")


@router.post(
    "/executions/{execution_id}/replay",
    dependencies=[Depends(guarded)],
    responses=errors(400, 401, 403, 404, 409, 422),
)
async def replay(request: Request, execution_id: Text, body: ReplayBody) -> dict[str, Any]:
    """Replay with the registered agent: a new execution; how it ended."""
    return await actions.replay(
        ui_of(request),
        execution_id,
        body.mode,
        actions.step_of(body.step),
        body.value,
        isinstance(body, Counterfactual),
        body.mock_llm,
    )


@router.post(
    "/executions/{execution_id}/fork",
    dependencies=[Depends(guarded)],
    responses=errors(400, 401, 403, 404, 409, 422),
)
async def fork(request: Request, execution_id: Text, body: ForkBody) -> dict[str, Any]:
    """A new execution with the steps before `step` copied; run at once with `run`."""
    return await actions.fork(ui_of(request), execution_id, actions.step_of(body.step), body.run)


@router.post(
    "/executions/{execution_id}/resume",
    dependencies=[Depends(guarded)],
    responses=errors(401, 403, 404, 409, 422),
)
async def resume(request: Request, execution_id: Text) -> dict[str, Any]:
    """Resume a pending run with its agent; its outcome, or "running"."""
    return await actions.resume(ui_of(request), execution_id)
