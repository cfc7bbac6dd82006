"""What every framework adapter needs, written once over livingai's public API: each
adapter only translates its framework's hooks into these.

- `runtime_of`: the Runtime an adapter records into, from a Runtime or an engine.
- `model_call`: a model call as a step at a node the adapter names: served from the log
  when a successful one is recorded there (a resumed run does not pay for it again),
  otherwise made, and recorded with its model, tokens, cost and latency.
- Tool calls go through `Runtime.call_tool` (write-ahead intent, idempotency key, the
  in-doubt policies), at a node the adapter derives from the framework's call id.
- `RecordedTools`: MOCK_TOOLS replay, the recorded result of the n-th call of a tool
  with these arguments, or ReplayDivergedError naming the closest recorded call.
- The durable-run wrapper's pieces: `started_input` (what a finished run is run again
  with), `check_recorded` (a `replay_of` that names nothing), `replay_plan` (what
  `runtime.replay` asked of a replay of an adapter run), and `Home` (home.py: the loop the
  engine lives on, for frameworks that call in from threads).
- `plain`, `canonical`, `digest`: values as JSON holds them, and stable ids from them.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from livingai import (
    CheckpointEngine,
    ConfigError,
    ErrorInfo,
    ExecutionNode,
    ExecutionNotFoundError,
    Lease,
    NodeType,
    PriceTable,
    ReplayDivergedError,
    ReplayMode,
    Run,
    Runtime,
    Status,
    StepFailedError,
)

T = TypeVar("T")


def runtime_of(source: Runtime | CheckpointEngine, who: str) -> Runtime:
    """The Runtime `who` (an adapter's name) records into: `source`, or one over it."""
    if isinstance(source, Runtime):
        return source
    if isinstance(source, CheckpointEngine):
        return Runtime(source)
    raise ConfigError(f"{who} records into a Runtime or an engine; got {source!r}")


def prices_of(runtime: Runtime, prices: PriceTable | None) -> PriceTable:
    """The price table to cost model calls with: `prices`, else the runtime's."""
    if prices is not None and not isinstance(prices, PriceTable):
        raise ConfigError(f"prices must be a PriceTable; got {prices!r}")
    return runtime.prices if prices is None else prices


async def started_input(engine: CheckpointEngine, execution_id: str, default: Any) -> Any:
    """The input durable run `execution_id` was started with (`default` if none is
    recorded): a finished run is run again with it, every call served from its log."""
    header = await engine.load(f"{execution_id}/run")
    args = [] if header is None else header.node.input.get("args", [])
    return args[0] if args else default


async def check_recorded(engine: CheckpointEngine, execution_id: str) -> None:
    """ExecutionNotFoundError when `execution_id` (a `replay_of`) has nothing recorded."""
    if not await engine.list_nodes(execution_id):
        raise ExecutionNotFoundError(
            f"no execution {execution_id!r} is recorded in {engine.store!r} to replay"
        )


def replay_plan(run: Run) -> tuple[str | None, str | None]:
    """What `runtime.replay` asked of a replay of an adapter run: the execution its tools
    are served from (MOCK_TOOLS; FULL runs them for real) and the one its model calls are
    served from (`mock_llm`: the same requests only; the others are made live). FROM_NODE
    and COUNTERFACTUAL name steps, which an adapter run has none of: replay refuses them."""
    script = run.script
    if script is None:
        return None, None
    original = script.original.execution_id
    tools_from = None if script.mode is ReplayMode.FULL else original
    return tools_from, original if script.mock_llm else None


# -- values -------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """`value` as JSON holds it: pydantic models by their fields, dataclasses too,
    anything else by its repr."""
    return json.loads(json.dumps(value, default=_plain_one))


def _plain_one(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            return dump(mode="json", warnings=False)
        except Exception:
            return repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return repr(value)


def canonical(value: Any) -> str:
    """`value` as JSON with sorted keys, to compare calls."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def digest(value: Any) -> str:
    """A short stable digest of `value`, for node ids derived from a call."""
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:16]


def short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- model calls --------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelUsage:
    """What a model call used, as the adapter reads it off the framework's response."""

    model: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0


async def model_call(
    runtime: Runtime,
    node: ExecutionNode,
    call: Callable[[], Awaitable[T]],
    *,
    encode: Callable[[T], Any],
    decode: Callable[[Any], T],
    usage: Callable[[T], ModelUsage | None],
    prices: PriceTable,
    fence: Lease | None = None,
    known: Mapping[str, ExecutionNode] | None = None,
) -> T:
    """`await call()` as a step at `node.id` (its input, parent and metadata as given):
    when a successful call is recorded there, `decode(recorded output)` without calling;
    otherwise the call is made and recorded (`encode(response)` as JSON, usage, cost,
    latency; a failure with its error), fenced with the run's lease when given, without
    waiting for the record's commit. At least once, like a step: a crash before the
    record lands makes it again. `known`: the
    execution's nodes as read under the run's lease, looked in instead of the store (a
    fresh run's calls then cost no read)."""
    if known is not None:
        recorded = known.get(node.id)
    else:
        loaded = await runtime.engine.load(node.id)
        recorded = None if loaded is None else loaded.node
    if recorded is not None and recorded.status is Status.SUCCESS:
        return decode(recorded.output)
    model_started(node)
    started = time.perf_counter()
    try:
        response = await call()
    except Exception as exc:
        model_failed(node, exc, started)
        await runtime.engine.save(node, fence=fence)
        raise
    model_done(node, encode(response), usage(response), prices, started)
    # Not waited for: a crash before it commits asks the model again (at least once, as
    # for any step), and whatever the agent does next with the response is saved after it.
    await runtime.engine.save(node, fence=fence, wait=False)
    return response


# The pieces of model_call, for an adapter whose framework calls its model from a thread
# (it calls the model there, and saves the node on the engine's loop).


def model_started(node: ExecutionNode) -> None:
    """`node` as a model call being made."""
    node.type, node.status = NodeType.PROMPT, Status.RUNNING
    node.metadata = {"kind": "model", "idempotent": True, **node.metadata}


def model_failed(node: ExecutionNode, exc: BaseException, started: float) -> None:
    """`node` as a call that raised `exc`, begun at `started` (time.perf_counter)."""
    node.status = Status.FAILED
    node.error = ErrorInfo(type(exc).__name__, str(exc))
    node.latency_ms = round((time.perf_counter() - started) * 1000.0, 3)


def model_done(
    node: ExecutionNode,
    output: Any,
    used: ModelUsage | None,
    prices: PriceTable,
    started: float,
) -> None:
    """`node` as a call that answered `output` (JSON), with its usage and cost."""
    node.latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
    node.status, node.output = Status.SUCCESS, output
    if used is not None:
        node.model = used.model
        node.prompt_tokens, node.completion_tokens = used.prompt_tokens, used.completion_tokens
        node.cost_tokens = used.prompt_tokens + used.completion_tokens
        node.metadata.update(
            cached_tokens=used.cached_tokens, reasoning_tokens=used.reasoning_tokens
        )
        if used.model is not None:
            node.cost = prices.cost(used.model, used.prompt_tokens, used.completion_tokens)


# -- MOCK_TOOLS replay --------------------------------------------------------------------


class RecordedTools:
    """The tool results a recorded execution holds, served to a replay of it: the n-th
    call of a tool with the same arguments gets the n-th recorded one (the last one again
    when there are fewer)."""

    def __init__(self, engine: CheckpointEngine, noun: str = "execution") -> None:
        self.engine = engine
        self.noun = noun  # what the framework calls an execution, for errors: "thread"
        self._served: Counter[tuple[str, str, str, str]] = Counter()

    async def find(
        self, original: str, replay: str, name: str, call: Mapping[str, Any]
    ) -> ExecutionNode:
        """The recorded call of tool `name` with `call` as its arguments in `original`,
        for the replay `replay`. ReplayDivergedError naming the closest recorded call when
        there is none: the real tool is never called in its place."""
        nodes = await self.engine.list_nodes(original)
        if not nodes:
            raise ExecutionNotFoundError(
                f"no {self.noun} {original!r} is recorded in {self.engine.store!r} to replay"
            )
        tools = [node for node in nodes if node.type is NodeType.TOOL]
        asked = canonical({"args": [], "kwargs": dict(call)})
        same = [
            node
            for node in tools
            if node.metadata.get("step") == name
            and canonical(node.input) == asked
            and node.status in (Status.SUCCESS, Status.FAILED)
        ]
        if same:
            served = (original, replay, name, asked)
            found = same[min(self._served[served], len(same) - 1)]
            self._served[served] += 1
            return found
        closest = max(
            tools,
            key=lambda node: (
                node.metadata.get("step") == name,
                difflib.SequenceMatcher(None, canonical(node.input), asked).ratio(),
            ),
            default=None,
        )
        found_text = (
            "it has no tool calls"
            if closest is None
            else f"the closest recorded call is tool {closest.metadata.get('step')!r} with "
            f"{short(canonical(closest.input))} ({closest.status.value})"
        )
        raise ReplayDivergedError(
            f"replay of {original!r} (MOCK_TOOLS): the call tool {name!r} with "
            f"{short(asked)} is not in the recording; {found_text}; the real tool was "
            "not called",
            execution_id=replay,
        )


def serving(recorded: ExecutionNode, original: str) -> Callable[..., Awaitable[Any]]:
    """In place of the real tool, in a replay: what the recording has for the call."""

    async def serve(*_: Any, **__: Any) -> Any:
        if recorded.status is Status.FAILED:
            info = recorded.error or ErrorInfo("Exception", "failed")
            raise StepFailedError(
                f"tool {recorded.metadata.get('step')!r} failed in the recording of "
                f"{original!r} with {info.type}: {info.message}",
                type_name=info.type,
            )
        return recorded.output

    return serve
