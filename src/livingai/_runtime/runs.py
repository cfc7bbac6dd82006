"""Durable agent runs: a crashed run resumes where it stopped, and no side effect happens
twice.

A run is an execution whose log holds, besides the steps, one record of the run itself
(node `<execution id>/run`, a MEMORY node: the agent's name and arguments, then its
result or error). Each `run.step` and `run.tool` is the node `<execution id>/<position>`,
numbered in the order the agent calls them. Run again (after a crash, or on purpose),
the agent's code starts from the top and fast-forwards: a step or tool that completed
returns its recorded output (or raises its recorded error) without running; the first
one not recorded runs for real.

What each kind of step gets:

- `run.step` (model calls, reads, anything idempotent): at least once. Its outcome is
  saved after it returns, within the engine's budget; a crash before that runs it again.
- `run.tool` (payments, emails: side effects): at most once by default. Its intent (name,
  arguments, idempotency key) is stored durably before it runs, its outcome durably
  after. A crash between the two leaves it *in doubt*: on resume it is never run again
  silently. With `retry_with_key=True` it runs again with the same idempotency key (exactly
  once, with a provider that deduplicates on that key); with `reconcile=fn`, `fn(step)`
  looks the effect up and returns its result (or NOT_DONE: then it runs again with the
  same key); otherwise InDoubtError, and the run is marked as needing a human.

One worker at a time runs an execution: it holds the execution's lease, renewed while the
run lives, and every write of the run is fenced with it, so a worker whose lease was
taken over cannot write to that execution any more (FencedError).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from .._core.commits import backoff_seconds
from .._core.engine import CheckpointEngine
from .._core.errors import (
    ConfigError,
    FencedError,
    InDoubtError,
    InvalidNodeError,
    LeaseHeldError,
    NeedsHumanError,
    NondeterminismError,
    NotInStepError,
    ReplayDivergedError,
    StoreError,
    StoreOutageError,
    check_setting,
)
from .._core.lifecycle import Closable
from .._core.model import ExecutionNode, NodeRecord, NodeType, Status, new_id, utcnow
from .._core.store import Lease
from .catalog import ExecutionSummary, SummaryPage, page, summaries
from .costs import PriceTable, record_usage
from .diff import ExecutionDiff, diff_executions
from .layout import (
    FINISHED,
    call_input,
    canonical,
    read_recorded_run,
    read_run,
    rebuild_error,
    record_error,
    run_node_id,
    step_node_id,
)
from .outages import OutageBound
from .replay import ReplayMode, ReplayScript, Serve
from .retention import GcReport, collect
from .workers import default_worker_id, holder_is_gone, owned_executions

logger = logging.getLogger("livingai")

T = TypeVar("T")
Agent = Callable[..., Awaitable[Any]]

NOT_DONE: Any = type("NotDone", (), {"__repr__": lambda self: "NOT_DONE"})()
"""What a `reconcile` function returns when the tool's effect did not happen."""


@dataclass(frozen=True)
class StepContext:
    """The step or tool running now (see current_step)."""

    execution_id: str
    name: str
    position: int  # in the order the agent calls its steps, from 0
    kind: Literal["step", "tool"]
    attempt: int  # 1, then more when an in-doubt tool runs again with its key
    idempotency_key: str  # `<execution id>/<position>`: the same across crashes and retries


_current: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar(
    "livingai_step", default=None
)


_running: contextvars.ContextVar[Run | None] = contextvars.ContextVar("livingai_run", default=None)


def current_run() -> Run | None:
    """The durable run this code is part of (its agent function, and what that awaits),
    or None: for an adapter whose framework is called from inside any agent function."""
    return _running.get()


def current_step() -> StepContext:
    """The step or tool this code runs in: for its idempotency key, above all."""
    step = _current.get()
    if step is None:
        raise NotInStepError(
            "current_step() was called outside a run's step or tool; call it from the "
            "function given to run.step() or run.tool()"
        )
    return step


class Run:
    """One run of an agent: what the agent's code calls its steps and tools on."""

    def __init__(
        self,
        runtime: Runtime,
        execution_id: str,
        lease: Lease,
        script: ReplayScript | None = None,
    ) -> None:
        self.runtime = runtime
        self.execution_id = execution_id
        self.lease = lease
        self.script = script  # when this run is a replay: which calls the recording serves
        self._links: dict[str, str] = {}  # Runtime.link_replay's, kept in its end's record
        self._recorded: dict[int, ExecutionNode] = {}  # position -> latest recorded version
        self._next = 0
        self._lost: FencedError | None = None  # the lease was lost: no more writes

    def __repr__(self) -> str:
        return f"Run({self.execution_id!r})"

    def step(
        self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Awaitable[Any]:
        """Run `fn(*args, **kwargs)` (sync or async) as a step, or return what it returned
        the first time. Its output must be JSON."""
        return self._call("step", self._position(), name, fn, args, kwargs, False, None)

    def tool(
        self,
        name: str,
        fn: Callable[..., Any],
        /,
        *args: Any,
        retry_with_key: bool = False,
        reconcile: Callable[[StepContext], Any] | None = None,
        **kwargs: Any,
    ) -> Awaitable[Any]:
        """Run `fn(*args, **kwargs)` as a tool: its intent stored before it runs, its
        outcome after; at most once, or exactly once with `retry_with_key` and a provider
        that deduplicates on `current_step().idempotency_key`. See the module docstring."""
        position = self._position()
        return self._call("tool", position, name, fn, args, kwargs, retry_with_key, reconcile)

    def _write_ahead(self) -> bool:
        """Whether a tool's intent is stored before it runs, and its outcome durably."""
        return True

    def _position(self) -> int:
        """Taken when the step is called, not when it starts: steps gathered concurrently
        keep the order they were called in, run after run."""
        position = self._next
        self._next += 1
        return position

    async def _call(
        self,
        kind: Literal["step", "tool"],
        position: int,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry_with_key: bool,
        reconcile: Callable[[StepContext], Any] | None,
    ) -> Any:
        if self._lost is not None:
            raise self._lost
        recorded = self._recorded.get(position)
        attempt = 1
        if recorded is not None:
            self._check_same(recorded, kind, position, name)
            if recorded.status is Status.SUCCESS:
                return recorded.output
            if recorded.status is Status.FAILED:
                raise rebuild_error(recorded, name)
            if kind == "tool" and recorded.status is Status.RUNNING:
                attempt = int(recorded.metadata.get("attempt", 1)) + 1
                step = self._context(kind, position, name, attempt - 1)
                if reconcile is not None:
                    found = await _call_maybe_async(reconcile, (step,), {}, step)
                    if found is not NOT_DONE:
                        return await self._finish(recorded, found, None, 0.0, kind, name)
                elif not retry_with_key:
                    raise await self.runtime.in_doubt(self, step)
        counterfactual = False
        if self.script is not None and attempt == 1:
            decision = self.script.decide(kind, position, name, args, kwargs)
            if isinstance(decision, Serve):
                return await self._serve(kind, position, name, args, kwargs, decision)
            args, kwargs, counterfactual = decision.args, decision.kwargs, decision.counterfactual
        step = self._context(kind, position, name, attempt)
        node = self._node(step, args, kwargs)
        if counterfactual:
            node.metadata["counterfactual"] = True
        _checked(node, name, "its arguments")  # refused before it runs, naming the step
        if kind == "tool" and self._write_ahead():
            await self._save(node, durable=True)  # the intent, on disk before the effect
        started = time.perf_counter()
        try:
            result = await _call_maybe_async(fn, args, kwargs, step)
        except Exception as exc:
            return await self._finish(node, None, exc, _ms(started), kind, name)
        return await self._finish(node, result, None, _ms(started), kind, name)

    async def _finish(
        self,
        node: ExecutionNode,
        result: Any,
        error: BaseException | None,
        latency_ms: float,
        kind: str,
        name: str,
    ) -> Any:
        """Record the outcome (a tool's durably) and give it back: the result, or raise."""
        node.completed_at = utcnow()
        node.latency_ms = latency_ms
        if error is None:
            node.status, node.output = Status.SUCCESS, result
            if kind == "step":
                record_usage(node, result, self.runtime.prices)
            try:
                _checked(node, name, "its output")
            except InvalidNodeError as invalid:
                node.output, error = None, invalid
        if error is not None:
            record_error(node, error)
        await self._save(node, durable=kind == "tool" and self._write_ahead())
        if error is not None:
            raise error
        return result

    async def _serve(
        self,
        kind: Literal["step", "tool"],
        position: int,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        serve: Serve,
    ) -> Any:
        """Answer a replayed call from the recording: record it as mocked (nothing ran,
        so nothing was spent) and return the recorded output, or raise the recorded
        error."""
        recorded = serve.recorded
        node = self._node(self._context(kind, position, name, 1), args, kwargs)
        node.completed_at = utcnow()
        node.model = recorded.model
        node.metadata.update(mocked=True, replayed_from=recorded.id)
        if serve.counterfactual:
            node.metadata["counterfactual"] = True
        failed = recorded.status is Status.FAILED and not serve.counterfactual
        if failed:
            node.status, node.error = Status.FAILED, recorded.error
            for key in ("error_class", "error_args"):
                node.metadata[key] = recorded.metadata.get(key)
        else:
            node.status, node.output = Status.SUCCESS, serve.output
        await self._save(node, durable=False)
        if failed:
            raise rebuild_error(recorded, name)
        return serve.output

    def _node(
        self, step: StepContext, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> ExecutionNode:
        return ExecutionNode(
            id=step.idempotency_key,
            execution_id=self.execution_id,
            type=NodeType.TOOL if step.kind == "tool" else NodeType.PROMPT,
            parent_id=run_node_id(self.execution_id),
            status=Status.RUNNING,
            input=call_input(args, kwargs),
            metadata={
                "step": step.name,
                "kind": step.kind,
                "position": step.position,
                "attempt": step.attempt,
                "idempotency_key": step.idempotency_key,
                "idempotent": step.kind == "step",
            },
        )

    def _context(
        self, kind: Literal["step", "tool"], position: int, name: str, attempt: int
    ) -> StepContext:
        key = step_node_id(self.execution_id, position)
        return StepContext(self.execution_id, name, position, kind, attempt, key)

    def _check_same(self, recorded: ExecutionNode, kind: str, position: int, name: str) -> None:
        was = (recorded.metadata.get("kind"), recorded.metadata.get("step"))
        if was != (kind, name):
            raise NondeterminismError(
                f"execution {self.execution_id!r}: at position {position} the agent asked "
                f"for {kind} {name!r}, but {was[0]} {was[1]!r} was recorded there; the "
                "agent's code must take the same path when it is run again"
            )

    async def _save(self, node: ExecutionNode, *, durable: bool) -> None:
        try:
            if durable:
                await self.runtime.outages.save_durably(node, self.lease)
            else:
                await self.runtime.engine.save(node, fence=self.lease)
        except FencedError as exc:
            self._lost = exc
            raise


class _OneTool(Run):
    """One tool call at a node its caller names (Runtime.call_tool): Run's protocol for a
    tool, without a lease, numbering by position or a record of a run."""

    def __init__(
        self,
        runtime: Runtime,
        execution_id: str,
        node_id: str,
        recorded: ExecutionNode | None,
        attempts: int,
        parent_id: str | None,
        metadata: dict[str, Any],
        fence: Lease | None = None,
        at_least_once: bool = False,
    ) -> None:
        self.runtime = runtime
        self.execution_id = execution_id
        self.fence = fence  # the caller's run's lease, when it has one: writes are fenced
        self.at_least_once = at_least_once
        self.script = None
        self._recorded = {} if recorded is None else {0: recorded}
        self._lost = None
        self.node_id = node_id
        self.attempts = attempts
        self.parent_id = parent_id
        self.extra = metadata

    def __repr__(self) -> str:
        return f"Runtime.call_tool({self.execution_id!r}, {self.node_id!r})"

    def _context(
        self, kind: Literal["step", "tool"], position: int, name: str, attempt: int
    ) -> StepContext:
        attempt += self.attempts
        return StepContext(self.execution_id, name, position, kind, attempt, self.node_id)

    def _node(
        self, step: StepContext, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> ExecutionNode:
        node = super()._node(step, args, kwargs)
        node.parent_id = self.parent_id
        del node.metadata["position"]  # not a step of a run: no place in its numbering
        node.metadata = {**self.extra, **node.metadata}  # the protocol's own keys win
        return node

    def _check_same(self, recorded: ExecutionNode, kind: str, position: int, name: str) -> None:
        was = (recorded.metadata.get("kind"), recorded.metadata.get("step"))
        if was != (kind, name):
            raise NondeterminismError(
                f"execution {self.execution_id!r}: node {self.node_id!r} was asked for "
                f"{kind} {name!r}, but {was[0]} {was[1]!r} was recorded there"
            )

    def _write_ahead(self) -> bool:
        return not self.at_least_once

    async def _save(self, node: ExecutionNode, *, durable: bool) -> None:
        if durable:
            await self.runtime.outages.save_durably(node, self.fence)
        else:
            await self.runtime.engine.save(node, fence=self.fence)


class Runtime(Closable):
    """Runs agents durably over an engine (see the module docstring).

    `worker_id` names this worker in leases (default: host, process id, kernel boot and
    process start time); a process restarted with the same id takes its executions back
    at once, and so does anyone from a default id whose process on this machine is gone;
    another worker waits until their leases expire (`lease_seconds`, renewed while a run
    lives). `prices` turns the tokens steps report into costs (default: PriceTable()).
    `store_outage_seconds` is how long a run waits out a store it cannot reach (default:
    30 s or `lease_seconds`, whichever is longer): meanwhile each of its store calls is
    tried again; past it the run raises StoreOutageError and stays unfinished.
    """

    def __init__(
        self,
        engine: CheckpointEngine,
        *,
        worker_id: str | None = None,
        lease_seconds: float = 30.0,
        store_outage_seconds: float | None = None,
        prices: PriceTable | None = None,
    ) -> None:
        check_setting("lease_seconds", lease_seconds, minimum=0, inclusive=False)
        if store_outage_seconds is None:
            store_outage_seconds = max(30.0, lease_seconds)
        check_setting("store_outage_seconds", store_outage_seconds, minimum=0, inclusive=False)
        if worker_id is not None and (not isinstance(worker_id, str) or not worker_id):
            raise ConfigError(f"worker_id must be a non-empty string; got {worker_id!r}")
        self.engine = engine
        self.worker_id = worker_id or default_worker_id()
        self.lease_seconds = lease_seconds
        self.outages = OutageBound(engine, store_outage_seconds)
        if prices is not None and not isinstance(prices, PriceTable):
            raise ConfigError(f"prices must be a PriceTable; got {prices!r}")
        self.prices = PriceTable() if prices is None else prices
        self._agents: dict[str, Agent] = {}
        self._running: set[str] = set()  # executions this process runs now
        self._closed = False

    def __repr__(self) -> str:
        return f"Runtime({self.engine!r}, worker_id={self.worker_id!r})"

    async def close(self) -> None:
        """Close the engine (and its store)."""
        await self._closing(self.engine.close)

    # -- agents ---------------------------------------------------------------------

    def agent(self, fn: Agent) -> Agent:
        """Register an agent by its name (`__name__`), so that recover_pending() can run
        it again; run() registers what it runs. The last one registered under a name is
        the one that runs: a new version of the agent's code replaces the old."""
        self._agents[agent_name(fn)] = fn
        return fn

    @property
    def agents(self) -> dict[str, Agent]:
        return dict(self._agents)

    # -- running --------------------------------------------------------------------

    async def run(
        self, agent: Agent, /, *args: Any, execution_id: str | None = None, **kwargs: Any
    ) -> Any:
        """Run `agent(run, *args, **kwargs)` as execution `execution_id` (a new one if
        None): start it, or resume it where it stopped. A finished execution returns
        its recorded result, or raises its recorded error, without running anything.
        Arguments given to resume must be those it was started with; none given means
        those. LeaseHeldError while another live worker runs it."""
        self._check_open()
        self.agent(agent)
        return await self._run(agent, args, kwargs, execution_id, None)

    async def _run(
        self,
        agent: Agent,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        execution_id: str | None,
        script: ReplayScript | None,
    ) -> Any:
        execution_id = new_id() if execution_id is None else execution_id
        if execution_id in self._running:  # the lease is this worker's: it would be taken over
            raise LeaseHeldError(
                f"execution {execution_id!r} is already running in this process",
                execution_id=execution_id,
                holder=self.worker_id,
            )
        self._running.add(execution_id)
        try:
            await self.outages.settle(execution_id)
            lease = await self.outages.call(
                f"taking the lease on execution {execution_id!r}",
                lambda: self._take_lease(execution_id),
            )
            run = Run(self, execution_id, lease, script)
            keeper = asyncio.create_task(self._keep(run), name=f"livingai-lease-{execution_id}")
            try:
                return await self._drive(run, agent, args, kwargs)
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                with contextlib.suppress(Exception):  # it expires by itself if this fails
                    await self.engine.release_lease(run.lease)
        finally:
            self._running.discard(execution_id)

    async def _take_lease(self, execution_id: str) -> Lease:
        """The execution's lease; taken over at once from a holder that is a process gone
        from this machine (killed, say), which would otherwise keep it until it expires."""
        try:
            return await self.engine.acquire_lease(execution_id, self.worker_id, self.lease_seconds)
        except LeaseHeldError as exc:
            if not holder_is_gone(exc.holder):
                raise
            logger.warning(
                "%r: worker %r, which held execution %r, is a process no longer running on "
                "this machine: taking its lease over",
                self,
                exc.holder,
                execution_id,
            )
            # taken over only from the gone worker: if another one took it meanwhile, this
            # raises LeaseHeldError naming that one
            return await self.engine.acquire_lease(
                execution_id, self.worker_id, self.lease_seconds, take_over=exc.holder
            )

    async def _drive(
        self, run: Run, agent: Agent, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Fast-forward `agent` through what is recorded, run the rest, record the end."""
        name = agent_name(agent)
        execution_id = run.execution_id
        recorded = await self.outages.call(
            f"reading run {execution_id!r}", lambda: read_run(self.engine, execution_id)
        )
        header, run._recorded = recorded.header, recorded.steps
        metadata: dict[str, Any] = {"run": True, "agent": name, "worker": self.worker_id}
        if header is not None:
            args, kwargs = _same_start(header, execution_id, name, args, kwargs)
            if header.status is Status.SUCCESS:
                return header.output
            if header.status is Status.FAILED:
                raise rebuild_error(header, name)
            for link in ("replay_of", "replay", "forked_from"):
                if link in header.metadata:
                    metadata[link] = header.metadata[link]
            if run.script is None and "replay" in metadata:  # a replay that crashed
                replay_of = str(metadata["replay_of"])
                original = await self.outages.call(
                    f"reading run {replay_of!r}", lambda: read_recorded_run(self.engine, replay_of)
                )
                run.script = ReplayScript.from_settings(original, metadata["replay"])
        if run.script is not None:
            metadata["replay_of"] = run.script.original.execution_id
            metadata["replay"] = run.script.settings()
        start = ExecutionNode(
            id=run_node_id(execution_id),
            execution_id=execution_id,
            type=NodeType.MEMORY,
            status=Status.RUNNING,
            input={"agent": name, "args": list(args), "kwargs": kwargs},
            metadata=metadata,
        )
        _checked(start, name, "the agent's arguments", what="agent")
        if header is None or header.metadata.get("needs_human"):
            await run._save(start, durable=True)
        running = _running.set(run)
        try:
            result = await agent(run, *args, **kwargs)
            if run.script is not None and run.script.diverged is not None:
                raise run.script.diverged  # the agent caught it: a replay that diverged failed
        except (
            InDoubtError,
            NeedsHumanError,
            FencedError,
            NondeterminismError,
            StoreOutageError,
        ):
            raise  # not the run's outcome: it stays unfinished, to be resumed
        except Exception as exc:
            start.metadata.update(run._links)
            record_error(start, exc)
            await run._save(start, durable=True)
            raise
        finally:
            _running.reset(running)
        start.metadata.update(run._links)
        start.status, start.output = Status.SUCCESS, result
        try:
            _checked(start, name, "its result", what="agent")
        except InvalidNodeError as invalid:
            start.output = None
            record_error(start, invalid)
            await run._save(start, durable=True)
            raise
        await run._save(start, durable=True)
        return result

    async def _keep(self, run: Run) -> None:
        """Renew the lease while the run lives; once it is lost, the run's writes fail.
        A renewal the store could not answer is tried again soon: the lease stays the
        run's, expired or not, as long as no other worker took it."""
        failures = 0
        while True:
            if failures:
                await asyncio.sleep(backoff_seconds(failures, self.lease_seconds / 6))
            else:
                await asyncio.sleep(self.lease_seconds / 3)
            try:
                renewed = await self.engine.renew_lease(run.lease, self.lease_seconds)
            except StoreError as exc:  # the store is down: try again
                failures += 1
                if failures == 1:
                    logger.warning("%r: renewing %s failed, retrying: %s", self, run.lease, exc)
                continue
            if failures:
                logger.warning("%r: renewed %s after %d failures", self, run.lease, failures)
                failures = 0
            if renewed is None:
                logger.error(
                    "%r: the lease on execution %r was lost (another worker took it over): "
                    "this worker stops writing to it",
                    self,
                    run.execution_id,
                )
                run._lost = FencedError(
                    f"{self!r} lost its lease on execution {run.execution_id!r}"
                )
                return
            run.lease = renewed

    async def in_doubt(self, run: Run, step: StepContext) -> InDoubtError:
        """Mark the run as needing a human, and say why."""
        header_id = run_node_id(run.execution_id)
        header = await self.outages.call(
            f"reading node {header_id}", lambda: self.engine.load(header_id)
        )
        if header is not None:
            node = header.node
            node.metadata = {
                **node.metadata,
                "needs_human": {
                    "step": step.name,
                    "position": step.position,
                    "idempotency_key": step.idempotency_key,
                },
            }
            await run._save(node, durable=True)
        return InDoubtError(
            f"execution {run.execution_id!r}: tool {step.name!r} (key "
            f"{step.idempotency_key!r}) was started and its outcome was never recorded: it "
            "may or may not have acted. It is not run again silently: pass "
            "retry_with_key=True (with a provider that deduplicates on the key) or "
            "reconcile=<a function that looks the effect up>"
            + ("" if header is None else "; the run is marked as needing a human meanwhile"),
            execution_id=run.execution_id,
            step=step.name,
            idempotency_key=step.idempotency_key,
        )

    async def needs_human(
        self, run: Run, why: str, details: Mapping[str, Any] | None = None
    ) -> NeedsHumanError:
        """Mark the run as waiting for a person's decision (an approval, say), durably:
        its record's `needs_human` becomes {"why": why, **details}, which `pending()`,
        `livingai pending` and the web UI show (`why`: one line for a person). The agent
        raises what this returns: the run then ends unfinished, not failed, and owned by
        no lease; run again once the decision is recorded, it starts from the top with
        the mark cleared."""
        if not isinstance(why, str) or not why:
            raise ConfigError(f"needs_human: why must be a non-empty string; got {why!r}")
        reason = {**dict(details or {}), "why": why}
        await self._annotate(run, "its needs_human details", needs_human=reason)
        return NeedsHumanError(
            f"execution {run.execution_id!r} waits for a human: {why}; it stays unfinished "
            "until it is run again",
            execution_id=run.execution_id,
            why=why,
            details=reason,
        )

    async def link_replay(self, run: Run, original: str) -> None:
        """Record on the run's record that it replays execution `original` (as a
        framework adapter's MOCK_TOOLS replay does, which runs a new input against the
        recording), so that listings, `show` and retention link the two as they link
        `replay()`'s runs; kept when the run is resumed."""
        if not isinstance(original, str) or not original:
            raise ConfigError(f"link_replay: original must be an execution id; got {original!r}")
        run._links["replay_of"] = original
        await self._annotate(run, "its replay_of", replay_of=original)

    async def _annotate(self, run: Run, part: str, **metadata: Any) -> None:
        """Add `metadata` to the run's record, durably."""
        header_id = run_node_id(run.execution_id)
        header = await self.outages.call(
            f"reading node {header_id}", lambda: self.engine.load(header_id)
        )
        if header is not None:
            node = header.node
            node.metadata = {**node.metadata, **metadata}
            _checked(node, run.execution_id, part, what="run")
            await run._save(node, durable=True)

    async def call_tool(
        self,
        execution_id: str,
        node_id: str,
        name: str,
        fn: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        retry_with_key: bool = False,
        reconcile: Callable[[StepContext], Any] | None = None,
        retry_failed: bool = False,
        parent_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        known: Mapping[str, ExecutionNode] | None = None,
        fence: Lease | None = None,
        at_least_once: bool = False,
    ) -> Any:
        """`run.tool` for frameworks that drive the agent themselves (the LangGraph
        adapter): the same protocol (intent durably before, outcome durably after, a
        recorded outcome returned without calling `fn`, an in-doubt call handled by the
        same policies) for `fn(*args, **kwargs)` at node `node_id` of `execution_id`,
        which is also its idempotency key. The caller makes the id stable across
        crashes; it takes no lease, so one process at a time calls a given node (with
        `fence`, the lease of the caller's run, its writes are refused, FencedError, once
        another worker took the run over). With `at_least_once`, a call safe to make again
        is recorded as a step is: no intent, its outcome saved within the engine's budget
        (committed by the next durable write at the latest), so a crash mid-call makes it
        again, with the same key; `retry_with_key` and `reconcile` do not apply.
        With `retry_failed`, a recorded failure is not final: `fn` runs again, same key,
        next attempt (for frameworks that run a failed step again). `metadata` is added
        to the node's; in `current_step()` the position is 0. `known`: the execution's
        nodes as the caller read them under its lease (one read for a whole run, not one
        a call), looked in instead of the store."""
        if known is not None:
            recorded = known.get(node_id)
        else:
            loaded = await self.outages.call(
                f"reading node {node_id}", lambda: self.engine.load(node_id)
            )
            recorded = None if loaded is None else loaded.node
        attempts = 0  # made before, when a recorded failure is run again
        if retry_failed and recorded is not None and recorded.status is Status.FAILED:
            attempts, recorded = int(recorded.metadata.get("attempt", 1)), None
        call = _OneTool(
            self,
            execution_id,
            node_id,
            recorded,
            attempts,
            parent_id,
            dict(metadata or {}),
            fence,
            at_least_once,
        )
        return await call._call(  # as run.tool, with no argument names taken
            "tool", 0, name, fn, tuple(args), dict(kwargs or {}), retry_with_key, reconcile
        )

    # -- pending executions -----------------------------------------------------------

    async def pending(self) -> list[PendingRun]:
        """Runs that are unfinished and that no live lease owns: crashed, or given up,
        oldest first. From the store's index of open runs: it costs what it returns, not
        what was ever run."""
        self._check_open()
        leases = [  # this worker's own, on runs not running here, it takes back at once
            lease
            for lease in await self.engine.leases()
            if lease.worker_id != self.worker_id or lease.execution_id in self._running
        ]
        owned = owned_executions(leases)
        found = []
        for entry in await self.engine.open_runs():  # from the store's index
            execution_id = entry.execution_id
            if execution_id in owned:
                continue
            loaded = await self.engine.load(run_node_id(execution_id))
            if loaded is None or loaded.node.status in FINISHED:
                continue
            header = loaded.node
            start = header.input if isinstance(header.input, dict) else {}
            found.append(
                PendingRun(
                    execution_id=execution_id,
                    agent=str(header.metadata.get("agent", "")),
                    args=list(start.get("args", [])),
                    kwargs=dict(start.get("kwargs", {})),
                    needs_human=header.metadata.get("needs_human"),
                )
            )
        return found

    async def recover_pending(self, *, concurrency: int = 16) -> list[RecoveredRun]:
        """Resume every pending run with its registered agent, `concurrency` at a time,
        and say how each ended."""
        check_setting("concurrency", concurrency, minimum=1, whole=True)
        gate = asyncio.Semaphore(concurrency)

        async def recover(pending: PendingRun) -> RecoveredRun:
            agent = self._agents.get(pending.agent)
            if agent is None:
                return RecoveredRun(pending.execution_id, "not_registered", agent=pending.agent)
            async with gate:
                try:
                    result = await self.run(
                        agent, *pending.args, execution_id=pending.execution_id, **pending.kwargs
                    )
                except InDoubtError as exc:
                    return RecoveredRun(pending.execution_id, "in_doubt", pending.agent, error=exc)
                except NeedsHumanError as exc:
                    return RecoveredRun(
                        pending.execution_id, "needs_human", pending.agent, error=exc
                    )
                except LeaseHeldError as exc:
                    return RecoveredRun(pending.execution_id, "leased", pending.agent, error=exc)
                except Exception as exc:
                    return RecoveredRun(pending.execution_id, "failed", pending.agent, error=exc)
            return RecoveredRun(pending.execution_id, "finished", pending.agent, result=result)

        return list(await asyncio.gather(*(recover(p) for p in await self.pending())))

    # -- debugging: replay, diff, fork; retention ----------------------------------------

    async def replay(
        self,
        execution_id: str,
        mode: ReplayMode | str = ReplayMode.FULL,
        *,
        agent: Agent | None = None,
        from_step: int | str | None = None,
        counterfactual: tuple[int | str, Any] | None = None,
        mock_llm: bool = False,
        real_tools: bool = False,
        replay_id: str | None = None,
    ) -> ReplayedRun:
        """Run the agent's code again against the recording of `execution_id`, as a new
        execution linked to it (`replay_of`), of id `replay_id` (default: a new one; give
        one to watch the replay while it runs); see the replay module for the modes. `agent`
        is a new version of the agent's code (default: the one registered under the
        recorded name). Steps are named by position, node id or name; `counterfactual` is
        (step, value): a tool's new result, or a step's new input (a dict of "args" and
        "kwargs", or its new first argument). `mock_llm` serves the recorded model
        outputs too, for the same requests only. What the agent raises is the replay's
        outcome (ReplayedRun.error); ReplayDivergedError, when the recording could not
        answer a call it had to, is raised."""
        self._check_open()
        original = await read_recorded_run(self.engine, execution_id)
        script = ReplayScript.plan(
            original,
            mode,
            from_step=from_step,
            counterfactual=counterfactual,
            mock_llm=mock_llm,
            real_tools=real_tools,
        )
        if agent is None:
            agent = self._agents.get(original.agent)
            if agent is None:
                raise ConfigError(
                    f"execution {execution_id!r} was run by agent {original.agent!r}, which "
                    "is not registered with this runtime: register it (@runtime.agent) or "
                    "pass agent= (a new version of its code)"
                )
        start = original.header.input if original.header is not None else {}
        args = tuple(start.get("args", [])) if isinstance(start, dict) else ()
        kwargs = dict(start.get("kwargs", {})) if isinstance(start, dict) else {}
        if replay_id is None:
            replay_id = new_id()
        elif not isinstance(replay_id, str) or not replay_id:
            raise ConfigError(f"replay_id must be a non-empty string; got {replay_id!r}")
        elif await self.engine.versions(replay_id):
            raise ConfigError(f"replay_id {replay_id!r} names an execution that exists")
        try:
            result = await self._run(agent, args, kwargs, replay_id, script)
        except ReplayDivergedError as exc:
            exc.execution_id = replay_id  # recorded there, failed with this error
            raise
        except (InDoubtError, FencedError, NondeterminismError):
            raise
        except Exception as exc:
            return ReplayedRun(replay_id, execution_id, script.mode, None, exc)
        return ReplayedRun(replay_id, execution_id, script.mode, result, None)

    async def executions(
        self,
        *,
        status: Status | str | None = None,
        agent: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        min_cost: float | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[ExecutionSummary]:
        """One summary per execution, oldest first, filtered: by status, by agent,
        started in [since, until) (naive: UTC), costing at least `min_cost` dollars.
        `ids` summarises only those executions (unknown ones are left out): a page of a
        long list reads its own executions, not all of them."""
        self._check_open()
        return await summaries(
            self.engine,
            status=status,
            agent=agent,
            since=since,
            until=until,
            min_cost=min_cost,
            ids=ids,
        )

    async def executions_page(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        status: Status | str | None = None,
        agent: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        min_cost: float | None = None,
    ) -> SummaryPage:
        """A page of executions, newest first (`limit`, 1 to 1000, after `cursor`: a
        page's own `cursor`), each summarised: of runs with this status and agent (from
        the store's index: an execution that is not a run has neither), started in
        [since, until) (naive: UTC), costing at least `min_cost` (within the page). It
        reads the page's executions only, however many are stored."""
        self._check_open()
        return await page(
            self.engine,
            limit=limit,
            cursor=cursor,
            status=status,
            agent=agent,
            since=since,
            until=until,
            min_cost=min_cost,
        )

    async def diff(self, a: str, b: str) -> ExecutionDiff:
        """Executions `a` and `b` compared step by step (see ExecutionDiff)."""
        self._check_open()
        return await diff_executions(self.engine, a, b)

    async def fork(self, execution_id: str, step: int | str) -> str:
        """A new execution (its id is returned) holding a copy of the run's steps before
        `step`, linked to it (`forked_from`): `run(agent, execution_id=<it>)` fast-forwards
        through the copy and runs from `step` on. The original is not touched."""
        self._check_open()
        original = await read_recorded_run(self.engine, execution_id)
        position = original.position(step)
        assert original.header is not None
        fork_id = new_id()
        metadata = {
            key: value
            for key, value in original.header.metadata.items()
            if key not in ("needs_human", "error_class", "error_args", "replay", "replay_of")
        }
        header = dataclasses.replace(
            original.header,
            id=run_node_id(fork_id),
            execution_id=fork_id,
            status=Status.RUNNING,
            created_at=utcnow(),
            completed_at=None,
            output=None,
            error=None,
            checkpoint=None,
            metadata={**metadata, "forked_from": execution_id, "fork_step": position},
        )
        await self.engine.save(header, durable=True)
        for at, node in sorted(original.steps.items()):
            if at >= position:
                break
            key = step_node_id(fork_id, at)
            copy = dataclasses.replace(
                node,
                id=key,
                execution_id=fork_id,
                parent_id=header.id,
                checkpoint=None,
                metadata={**node.metadata, "idempotency_key": key, "copied_from": node.id},
            )
            await self.engine.save(copy, await self.engine.decode_state(node))
        await self.engine.flush()
        return fork_id

    async def gc(
        self,
        *,
        keep_checkpoints: int | None = None,
        finished_before: datetime | None = None,
        dry_run: bool = False,
    ) -> GcReport:
        """Delete finished executions that ended before `finished_before` (naive: UTC),
        and drop the state blobs of all but the newest `keep_checkpoints` checkpointed
        versions of each execution left. Unfinished and leased executions, and those a
        kept replay or fork points at, are kept whole. With `dry_run`, only say what
        would go."""
        self._check_open()
        return await collect(
            self.engine,
            keep_checkpoints=keep_checkpoints,
            finished_before=finished_before,
            dry_run=dry_run,
        )


@dataclass(frozen=True)
class ReplayedRun:
    """A replay by Runtime.replay: the new execution, and how the agent ended in it."""

    execution_id: str
    replay_of: str
    mode: ReplayMode
    result: Any = None
    error: BaseException | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "replay_of": self.replay_of,
            "mode": self.mode.value,
            "result": self.result,
            "error": error_text(self.error),
        }


@dataclass(frozen=True)
class PendingRun:
    """An unfinished run no live worker owns."""

    execution_id: str
    agent: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    needs_human: Any = None  # the in-doubt tool that stopped it, or Runtime.needs_human's why

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RecoveredRun:
    """How recover_pending() left one run."""

    execution_id: str
    outcome: Literal["finished", "failed", "in_doubt", "needs_human", "leased", "not_registered"]
    agent: str = ""
    result: Any = None
    error: BaseException | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "outcome": self.outcome,
            "agent": self.agent,
            "result": self.result,
            "error": error_text(self.error),
        }


# -- helpers ------------------------------------------------------------------------------


def error_text(error: BaseException | None) -> str | None:
    """An outcome's exception as JSON can hold it: its type and message."""
    return None if error is None else f"{type(error).__name__}: {error}"


def agent_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__name__", None) or repr(fn))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


def _checked(node: ExecutionNode, name: str, part: str, *, what: str = "step") -> None:
    """InvalidNodeError naming the step when the node cannot be stored as it is."""
    try:
        NodeRecord.from_node(node)
    except InvalidNodeError as exc:
        raise InvalidNodeError(f"{what} {name!r}: {part} cannot be stored: {exc}") from None


async def _call_maybe_async(
    fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any], step: StepContext
) -> Any:
    """Call `fn` with `step` as the current step: a coroutine function on the loop, a
    plain function on a thread (it may block), its context copied along."""
    token = _current.set(step)
    try:
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        result = await asyncio.to_thread(fn, *args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result
    finally:
        _current.reset(token)


def _same_start(
    header: ExecutionNode,
    execution_id: str,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments to resume with: those recorded; those given must be the same."""
    start = header.input if isinstance(header.input, dict) else {}
    recorded_agent = header.metadata.get("agent")
    if recorded_agent != name:
        raise NondeterminismError(
            f"execution {execution_id!r} was started by agent {recorded_agent!r}, not {name!r}"
        )
    recorded_args = list(start.get("args", []))
    recorded_kwargs = dict(start.get("kwargs", {}))
    if (args or kwargs) and canonical([list(args), kwargs]) != canonical(
        [recorded_args, recorded_kwargs]
    ):
        raise NondeterminismError(
            f"execution {execution_id!r} was started with arguments {recorded_args!r} "
            f"{recorded_kwargs!r}; run() was given {list(args)!r} {kwargs!r}"
        )
    return tuple(recorded_args), recorded_kwargs
