"""Durable runs: fast-forward through what a run did, tools at most once (or exactly once
with their key), in-doubt tools never run again silently, nondeterminism caught, leases
and fencing. Crashes are simulated here by an exception that is not an Exception (as a
kill leaves no outcome recorded); tests/test_crash_runs.py kills real processes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import livingai
from livingai import (
    NOT_DONE,
    CheckpointEngine,
    CheckpointStore,
    ConfigError,
    ExecutionNode,
    FencedError,
    InDoubtError,
    InvalidNodeError,
    LeaseHeldError,
    MemoryStore,
    NeedsHumanError,
    NodeType,
    NondeterminismError,
    NotInStepError,
    Run,
    Runtime,
    Status,
    StepContext,
    StepFailedError,
    current_step,
)
from tests.conftest import StoreFactory


class Crash(BaseException):
    """What a kill looks like from inside: no handler records an outcome."""


class Calls(Counter[str]):
    """How many times each fake service was really called."""


@pytest.fixture
async def runtime(store_factory: StoreFactory) -> AsyncIterator[Runtime]:
    async with Runtime(CheckpointEngine(store_factory()), worker_id="tester") as opened:
        yield opened


def order_agent(calls: Calls, *, crash_in: str = "", **tool_options: Any) -> Any:
    """plan (a fake model), charge (a fake payment), notify; `crash_in` kills the
    process inside that step, after its effect."""

    async def llm(order: dict[str, Any]) -> dict[str, Any]:
        calls["llm"] += 1
        if crash_in == "plan":
            raise Crash
        return {"plan": f"charge {order['amount']}"}

    async def charge(amount: int) -> dict[str, Any]:
        calls["charge"] += 1
        calls[f"key {current_step().idempotency_key}"] += 1
        if crash_in == "charge":
            raise Crash  # the card was charged; the outcome is never recorded
        return {"receipt": f"R-{amount}", "attempt": current_step().attempt}

    def notify(receipt: dict[str, Any]) -> str:  # a sync step: it runs on a thread
        calls["notify"] += 1
        return f"sent {receipt['receipt']} as {current_step().name}"

    async def agent(run: Run, order: dict[str, Any]) -> dict[str, Any]:
        await run.step("plan", llm, order)
        receipt = await run.tool("charge", charge, order["amount"], **tool_options)
        note = await run.step("notify", notify, receipt)
        return {"receipt": receipt, "note": note}

    agent.__name__ = "order_agent"
    return agent


async def test_a_run_is_recorded_and_a_finished_one_is_not_run_again(runtime: Runtime) -> None:
    calls = Calls()
    agent = order_agent(calls)
    result = await runtime.run(agent, {"amount": 42}, execution_id="order-42")
    assert result == {"receipt": {"receipt": "R-42", "attempt": 1}, "note": "sent R-42 as notify"}
    assert calls == Calls({"llm": 1, "charge": 1, "notify": 1, "key order-42/1": 1})
    assert await runtime.run(agent, {"amount": 42}, execution_id="order-42") == result
    assert await runtime.run(agent, execution_id="order-42") == result  # args as recorded
    assert calls["llm"] == calls["charge"] == calls["notify"] == 1  # nothing ran again
    nodes = await runtime.engine.list_nodes("order-42")
    assert [n.id for n in nodes] == ["order-42/run", "order-42/0", "order-42/1", "order-42/2"]
    assert [n.type.value for n in nodes] == ["MEMORY", "PROMPT", "TOOL", "PROMPT"]
    tool = nodes[2]
    assert tool.metadata["idempotency_key"] == "order-42/1"
    assert tool.input == {"args": [42], "kwargs": {}}
    history = await runtime.engine.history("order-42/1")
    assert [v.status for v in history] == [Status.RUNNING, Status.SUCCESS]  # intent, outcome


async def test_a_crashed_run_fast_forwards_and_finishes(runtime: Runtime) -> None:
    calls = Calls()
    with pytest.raises(Crash):
        await runtime.run(order_agent(calls, crash_in="plan"), {"amount": 5}, execution_id="o")
    assert [p.execution_id for p in await runtime.pending()] == ["o"]
    result = await runtime.run(order_agent(calls), {"amount": 5}, execution_id="o")
    assert result["receipt"]["receipt"] == "R-5"
    assert (calls["llm"], calls["charge"]) == (2, 1)  # the step ran again; the tool once
    assert await runtime.pending() == []


async def test_an_in_doubt_tool_is_not_run_again_silently(runtime: Runtime) -> None:
    calls = Calls()
    with pytest.raises(Crash):
        await runtime.run(order_agent(calls, crash_in="charge"), {"amount": 7}, execution_id="d")
    with pytest.raises(InDoubtError, match="retry_with_key=True") as caught:
        await runtime.run(order_agent(calls), {"amount": 7}, execution_id="d")
    assert (caught.value.execution_id, caught.value.step) == ("d", "charge")
    assert caught.value.idempotency_key == "d/1"
    assert calls["charge"] == 1  # never called again
    (pending,) = await runtime.pending()
    assert pending.needs_human == {"step": "charge", "position": 1, "idempotency_key": "d/1"}
    with pytest.raises(InDoubtError):  # and again, until someone decides
        await runtime.run(order_agent(calls), {"amount": 7}, execution_id="d")
    assert calls["charge"] == 1


async def test_a_run_waiting_for_a_human_stays_unfinished_until_run_again(
    runtime: Runtime,
) -> None:
    """Runtime.needs_human: the run ends unfinished, not failed; pending() and recovery
    say why; run again once the decision is in, it goes on with the mark cleared."""
    calls = Calls()
    decided: dict[str, str] = {}

    async def plan(amount: int) -> int:
        calls["plan"] += 1
        return amount

    async def approval(run: Run, amount: int) -> str:
        await run.step("plan", plan, amount)
        if "h" not in decided:
            raise await run.runtime.needs_human(run, "approve the charge", {"amount": amount})
        return decided["h"]

    with pytest.raises(NeedsHumanError, match="waits for a human: approve the charge") as caught:
        await runtime.run(approval, 9, execution_id="h")
    assert (caught.value.execution_id, caught.value.why) == ("h", "approve the charge")
    (pending,) = await runtime.pending()
    assert pending.needs_human == {"amount": 9, "why": "approve the charge"}
    (recovered,) = await runtime.recover_pending()  # still nobody decided
    assert recovered.outcome == "needs_human"
    header = await runtime.engine.load("h/run")
    assert header is not None
    assert header.node.status is Status.RUNNING
    decided["h"] = "approved"
    assert await runtime.run(approval, 9, execution_id="h") == "approved"
    assert calls["plan"] == 1
    assert await runtime.pending() == []
    header = await runtime.engine.load("h/run")
    assert header is not None
    assert "needs_human" not in header.node.metadata

    async def vague(run: Run) -> None:
        raise await run.runtime.needs_human(run, "")

    with pytest.raises(ConfigError, match="why must be a non-empty string"):
        await runtime.run(vague, execution_id="v")


async def test_retry_with_key_runs_an_in_doubt_tool_again_with_the_same_key(
    runtime: Runtime,
) -> None:
    calls = Calls()
    with pytest.raises(Crash):
        await runtime.run(
            order_agent(calls, crash_in="charge", retry_with_key=True),
            {"amount": 9},
            execution_id="k",
        )
    result = await runtime.run(order_agent(calls, retry_with_key=True), execution_id="k")
    assert result["receipt"] == {"receipt": "R-9", "attempt": 2}
    assert calls["key k/1"] == 2  # the provider saw one key twice: it deduplicates
    assert calls["llm"] == 1


async def test_reconcile_looks_the_effect_up_instead_of_running_the_tool(runtime: Runtime) -> None:
    calls = Calls()
    with pytest.raises(Crash):
        await runtime.run(order_agent(calls, crash_in="charge"), {"amount": 3}, execution_id="r")
    seen: list[StepContext] = []

    def found(step: StepContext) -> Any:  # the provider has the charge: its receipt
        seen.append(step)
        return {"receipt": "R-3 (looked up)"}

    result = await runtime.run(order_agent(calls, reconcile=found), execution_id="r")
    assert result["receipt"] == {"receipt": "R-3 (looked up)"}
    assert calls["charge"] == 1
    assert [(s.name, s.idempotency_key) for s in seen] == [("charge", "r/1")]
    tool = await runtime.engine.load("r/1")
    assert tool is not None
    assert tool.node.status is Status.SUCCESS

    with pytest.raises(Crash):
        await runtime.run(order_agent(calls, crash_in="charge"), {"amount": 4}, execution_id="n")
    result = await runtime.run(
        order_agent(calls, reconcile=lambda step: NOT_DONE), execution_id="n"
    )
    assert result["receipt"] == {"receipt": "R-4", "attempt": 2}  # not done: run it now
    assert calls["key n/1"] == 2


async def test_a_different_path_on_resume_is_nondeterminism(runtime: Runtime) -> None:
    async def first(run: Run) -> None:
        await run.step("fetch", lambda: 1)
        raise Crash

    async def changed(run: Run) -> None:
        await run.step("search", lambda: 1)

    first.__name__ = changed.__name__ = "flaky"
    with pytest.raises(Crash):
        await runtime.run(first, execution_id="nd")
    with pytest.raises(NondeterminismError, match=r"asked for step 'search'.*'fetch' was recorded"):
        await runtime.run(changed, execution_id="nd")
    with pytest.raises(NondeterminismError, match="was started with arguments"):
        await runtime.run(first, "other", execution_id="nd")

    async def other(run: Run) -> None:
        return None

    with pytest.raises(NondeterminismError, match="started by agent 'flaky'"):
        await runtime.run(other, execution_id="nd")


class OutOfStock(Exception):
    def __init__(self, item: str, left: int) -> None:
        super().__init__(item, left)
        self.item, self.left = item, left


async def test_a_step_that_raised_raises_again_without_running(runtime: Runtime) -> None:
    calls = Calls()
    seen: list[BaseException] = []

    async def reserve(item: str) -> None:
        calls["reserve"] += 1
        raise OutOfStock(item, 0)

    def refund() -> None:
        class Unreachable(Exception):  # defined where no one can find it again
            pass

        calls["refund"] += 1
        raise Unreachable("gone")

    async def agent(run: Run) -> None:
        for name, fn, args in (("reserve", reserve, ("lamp",)), ("refund", refund, ())):
            try:
                await run.tool(name, fn, *args)
            except Exception as exc:
                seen.append(exc)
        raise Crash  # unfinished: the next run replays the two failures

    with pytest.raises(Crash):
        await runtime.run(agent, execution_id="raises")
    with pytest.raises(Crash):
        await runtime.run(agent, execution_id="raises")
    assert (calls["reserve"], calls["refund"]) == (1, 1)  # neither ran again
    first_reserve, first_refund, again_reserve, again_refund = seen
    assert isinstance(again_reserve, OutOfStock)  # the same exception, rebuilt
    assert (again_reserve.item, again_reserve.left) == ("lamp", 0)
    assert type(first_refund).__name__ == "Unreachable"
    assert isinstance(again_refund, StepFailedError)  # its class cannot be found again
    assert again_refund.type_name == "Unreachable"
    assert "Unreachable: gone" in str(again_refund)
    assert isinstance(first_reserve, OutOfStock)


async def test_a_run_that_failed_raises_its_error_again(runtime: Runtime) -> None:
    calls = Calls()

    async def broken(run: Run) -> None:
        calls["ran"] += 1
        await run.step("one", lambda: 1)
        raise ValueError("the agent's own bug")

    for _ in range(2):
        with pytest.raises(ValueError, match="the agent's own bug"):
            await runtime.run(broken, execution_id="failed")
    assert calls["ran"] == 1
    assert await runtime.pending() == []


async def test_an_output_that_is_not_json_names_the_step(runtime: Runtime) -> None:
    calls = Calls()

    def opaque() -> object:
        calls["opaque"] += 1
        return object()

    async def agent(run: Run) -> None:
        await run.step("opaque", opaque)

    for _ in range(2):
        with pytest.raises(InvalidNodeError, match="step 'opaque': its output cannot be stored"):
            await runtime.run(agent, execution_id="json")
    assert calls["opaque"] == 1

    async def bad_args(run: Run) -> None:
        await run.tool("pay", opaque, object())

    with pytest.raises(InvalidNodeError, match="step 'pay': its arguments cannot be stored"):
        await runtime.run(bad_args, execution_id="args")
    assert calls["opaque"] == 1  # refused before the tool ran


def test_current_step_outside_a_step_says_where_to_call_it() -> None:
    with pytest.raises(NotInStepError, match=r"run.step\(\) or run.tool\(\)"):
        current_step()


async def test_steps_gathered_keep_their_positions(runtime: Runtime) -> None:
    order: list[str] = []

    async def slow(name: str, delay: float) -> str:
        await asyncio.sleep(delay)
        order.append(name)
        return name

    async def agent(run: Run) -> list[str]:
        return list(
            await asyncio.gather(run.step("a", slow, "a", 0.02), run.step("b", slow, "b", 0))
        )

    assert await runtime.run(agent, execution_id="gather") == ["a", "b"]
    assert order == ["b", "a"]
    nodes = {n.id: n.metadata.get("step") for n in await runtime.engine.list_nodes("gather")}
    assert (nodes["gather/0"], nodes["gather/1"]) == ("a", "b")


# -- leases -------------------------------------------------------------------------------


async def test_two_workers_never_both_run_an_execution(persistent_factory: StoreFactory) -> None:
    ran: Counter[str] = Counter()
    gate = asyncio.Event()

    async def job(run: Run, number: int) -> int:
        await run.step("start", lambda: number)  # recorded before the crash
        ran[run.execution_id] += 1  # the agent's code past what was recorded
        await run.step("work", gate.wait)
        return number

    job.__name__ = "job"
    async with Runtime(CheckpointEngine(persistent_factory()), worker_id="crashed") as first:
        for number in range(6):  # six runs that crash before they finish
            with pytest.raises(Crash):
                await first.run(_crashing(job), number, execution_id=f"job-{number}")
    ran.clear()
    async with (
        Runtime(CheckpointEngine(persistent_factory()), worker_id="a") as a,
        Runtime(CheckpointEngine(persistent_factory()), worker_id="b") as b,
    ):
        a.agent(job)
        b.agent(job)
        racing = asyncio.gather(a.recover_pending(), b.recover_pending())
        await asyncio.sleep(0.05)  # both workers take what they can before the steps end
        gate.set()
        reports = [report for worker in await racing for report in worker]
    assert ran == Counter({f"job-{n}": 1 for n in range(6)})  # each run once, by one worker
    finished = {r.execution_id for r in reports if r.outcome == "finished"}
    assert finished == {f"job-{n}" for n in range(6)}
    assert all(r.outcome in ("finished", "leased") for r in reports), reports


def _crashing(job: Any) -> Any:
    async def crashing(run: Run, number: int) -> int:
        await run.step("start", lambda: number)
        raise Crash

    crashing.__name__ = job.__name__
    return crashing


async def test_a_worker_whose_lease_was_taken_over_cannot_write(
    persistent_factory: StoreFactory,
) -> None:
    """A process restarted with the same worker id takes its execution back at once: the
    old incarnation, still running somewhere, is fenced off at its next write."""
    taken = asyncio.Event()
    go_on = asyncio.Event()

    async def agent(run: Run) -> str:
        await run.step("before", lambda: 1)
        taken.set()
        await go_on.wait()
        await run.step("after", lambda: 2)  # the old worker's write: refused
        return "old"

    async with (
        Runtime(CheckpointEngine(persistent_factory()), worker_id="w") as old,
        Runtime(CheckpointEngine(persistent_factory()), worker_id="w") as restarted,
    ):
        running = asyncio.create_task(old.run(agent, execution_id="fenced"))
        await taken.wait()
        lease = await restarted.engine.acquire_lease("fenced", "w", 30)  # the restart
        go_on.set()
        with pytest.raises(FencedError, match="taken over"):
            await running
        assert [n.id for n in await restarted.engine.list_nodes("fenced")] == [
            "fenced/run",
            "fenced/0",
        ]
        await restarted.engine.release_lease(lease)


async def test_an_expired_lease_is_taken_over_by_another_worker(
    persistent_factory: StoreFactory,
) -> None:
    async with CheckpointEngine(persistent_factory()) as engine:
        lease = await engine.acquire_lease("slow", "stalled", 0.3)
        with pytest.raises(LeaseHeldError, match="run by worker 'stalled'"):
            await engine.acquire_lease("slow", "other", 30)
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # the stalled worker never renews: its lease runs out
            try:
                taken = await engine.acquire_lease("slow", "other", 30)
                break
            except LeaseHeldError:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
        assert taken.token > lease.token
        stale = ExecutionNode(execution_id="slow", type=NodeType.PROMPT)
        with pytest.raises(FencedError):
            await engine.save(stale, durable=True, fence=lease)
        await engine.save(stale, durable=True, fence=taken)  # the new holder writes


async def test_recover_pending_reports_an_agent_it_does_not_know(
    store_factory: StoreFactory,
) -> None:
    async def known(run: Run) -> str:
        await run.step("s", lambda: 1)
        raise Crash

    async with Runtime(CheckpointEngine(store_factory()), worker_id="w") as runtime:
        with pytest.raises(Crash):
            await runtime.run(known, execution_id="orphan")
        async with Runtime(runtime.engine, worker_id="w2") as fresh:  # knows no agent
            (report,) = await fresh.recover_pending()
        assert (report.execution_id, report.outcome, report.agent) == (
            "orphan",
            "not_registered",
            "known",
        )


async def test_a_run_already_running_here_is_refused() -> None:
    release = asyncio.Event()

    async def waits(run: Run) -> None:
        await run.step("wait", release.wait)

    async with Runtime(CheckpointEngine(MemoryStore())) as runtime:
        first = asyncio.create_task(runtime.run(waits, execution_id="twice"))
        await asyncio.sleep(0)
        with pytest.raises(LeaseHeldError, match="already running in this process"):
            await runtime.run(waits, execution_id="twice")
        release.set()
        await first


async def test_a_store_without_leases_is_refused_by_name() -> None:
    class Plain:
        """A third-party store that keeps no leases."""

        def __init__(self) -> None:
            self.inner = MemoryStore()

        def __getattr__(self, name: str) -> Any:
            if name in ("acquire_lease", "renew_lease", "release_lease", "leases"):
                raise AttributeError(name)
            return getattr(self.inner, name)

    plain: CheckpointStore = Plain()
    async with Runtime(CheckpointEngine(plain)) as runtime:

        async def agent(run: Run) -> None:
            return None

        with pytest.raises(ConfigError, match="keeps no leases"):
            await runtime.run(agent)


def test_a_state_is_shown_as_json_text_or_binary() -> None:
    assert livingai.state_view(b'{"plan": [1, 2]}') == ("json", {"plan": [1, 2]})
    assert livingai.state_view("déjà vu".encode()) == ("text", "déjà vu")
    assert livingai.state_view(b"\xff\x00\x01") == ("binary", None)


async def test_link_replay_marks_the_run_as_a_replay_and_the_mark_stays(
    runtime: Runtime,
) -> None:
    """Runtime.link_replay: a framework's replay (a new input against a recording) is
    listed as a replay of its original once finished, and so after a resume."""
    tries = Calls()

    async def replaying(run: Run) -> str:
        await run.runtime.link_replay(run, "original")
        tries["run"] += 1
        if tries["run"] == 1:
            raise NeedsHumanError("stop once", execution_id=run.execution_id)
        return "replayed"

    with pytest.raises(NeedsHumanError):
        await runtime.run(replaying, execution_id="r")
    (unfinished,) = await runtime.executions(ids=["r"])
    assert unfinished.replay_of == "original"
    assert await runtime.run(replaying, execution_id="r") == "replayed"
    (finished,) = await runtime.executions(ids=["r"])
    assert (finished.status, finished.replay_of) == (Status.SUCCESS, "original")

    async def vague(run: Run) -> None:
        await run.runtime.link_replay(run, "")

    with pytest.raises(ConfigError, match="original must be an execution id"):
        await runtime.run(vague, execution_id="v")


async def test_call_tool_with_a_lost_lease_is_fenced_before_the_tool_runs(
    runtime: Runtime,
) -> None:
    """Runtime.call_tool(fence=): once another worker took the run over, the intent is
    refused (FencedError), so the tool never runs and nothing is recorded."""
    calls = Calls()

    async def charge() -> str:
        calls["charge"] += 1
        return "R-1"

    lost = await runtime.engine.acquire_lease("f", "w1", 30.0)
    await runtime.engine.acquire_lease("f", "w2", 30.0, take_over="w1")
    with pytest.raises(FencedError):
        await runtime.call_tool("f", "f/tool", "charge", charge, fence=lost)
    assert calls["charge"] == 0
    assert await runtime.engine.load("f/tool") is None
    held = await runtime.engine.acquire_lease("g", "w1", 30.0)
    assert await runtime.call_tool("g", "g/tool", "charge", charge, fence=held) == "R-1"


async def test_call_tool_at_least_once_records_the_outcome_only(runtime: Runtime) -> None:
    """Runtime.call_tool(at_least_once=True), for a call safe to make again: no intent
    before it runs (nothing to be in doubt about), the outcome recorded and served; the
    write-ahead protocol otherwise stores the intent first."""
    seen: dict[str, Any] = {}

    def looking(node_id: str) -> Callable[[], Awaitable[str]]:
        async def look() -> str:
            found = await runtime.engine.load(node_id)
            seen[node_id] = None if found is None else found.node.status
            return "answer"

        return look

    assert await runtime.call_tool("a", "a/t", "look", looking("a/t"), at_least_once=True) == (
        "answer"
    )
    assert seen["a/t"] is None  # no intent was written before it ran
    recorded = await runtime.engine.load("a/t")
    assert recorded is not None
    assert (recorded.node.type, recorded.node.status) == (NodeType.TOOL, Status.SUCCESS)
    seen.clear()
    assert await runtime.call_tool("a", "a/t", "look", looking("a/t"), at_least_once=True) == (
        "answer"
    )
    assert seen == {}  # served from the log: not run again
    await runtime.call_tool("b", "b/t", "look", looking("b/t"))
    assert seen["b/t"] is Status.RUNNING  # the intent, stored before the call
