"""OpenAIAgentsAdapter: SDK runs as durable runs. A run killed mid-tool resumes in a fresh
process without asking the model again for recorded turns or charging twice; tools keep
their policies; MOCK_TOOLS replay; costs; bad input. No network: a fake model."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Model, RunConfig, function_tool
from fastapi.testclient import TestClient

from livingai import (
    CheckpointEngine,
    ConfigError,
    ExecutionNotFoundError,
    InvalidNodeError,
    LeaseHeldError,
    NodeType,
    Price,
    PriceTable,
    ReplayDivergedError,
    Runtime,
    SQLiteStore,
    Status,
    StepNotFoundError,
    WrongLoopError,
    current_step,
)
from livingai.adapters.openai_agents import OpenAIAgentsAdapter
from livingai.web.app import create_app
from tests.openai_agents.fakes import (
    COMPLETION_TOKENS,
    MODEL,
    PROMPT_TOKENS,
    OrderModel,
    Provider,
    model_calls,
)
from tests.payments import POLICIES, answers_of, killed_once_charged, provider_counts
from tests.services import ROOT, child
from tests.store_urls import fresh_store_url

SECONDS = 60.0


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_store_url(str(request.param), tmp_path, "livingai_oai") as url:
        yield url


def _child(url: str, tmp: Path, orders: str, hang: str) -> subprocess.Popen[str]:
    files = [str(tmp / "provider.db"), str(tmp / "model.log")]
    return child("tests.openai_agents.crash_child", url, *files, orders, hang)


@pytest.mark.timeout(2 * SECONDS)
def test_runs_killed_between_two_parallel_tool_calls_resume_in_a_fresh_process(
    store_url: str, tmp_path: Path
) -> None:
    # One run per policy, each killed with `a` done and `b` charged but not answered.
    killed_once_charged(_child(store_url, tmp_path, "a,b", "b"), {f"b@{p}" for p in POLICIES})
    assert model_calls(tmp_path / "model.log") == 3  # each run's first turn
    answers = answers_of(_child(store_url, tmp_path, "a,b", "-"))
    seen = provider_counts(tmp_path)
    assert seen["charges"] == {f"{o}@{p}": 1 for o in "ab" for p in POLICIES}
    attempts = seen["attempts"]
    assert all(attempts[f"a@{p}"] == 1 for p in POLICIES)  # done before: served
    # b was in flight. retry_with_key runs it again under the same key (the provider
    # deduplicates); reconcile looks the charge up; the default is in doubt, never run
    # again silently.
    assert [attempts[f"b@{p}"] for p in POLICIES] == [2, 1, 1]
    assert answers["default"] == {"in_doubt": "trip-default/oai:tool:call-b@default"}
    for policy in ("retry_with_key", "reconcile"):
        receipts = [json.dumps({"receipt": seen["receipts"][f"{o}@{policy}"]}) for o in "ab"]
        assert answers[policy] == {"result": "done: " + "; ".join(receipts)}
    # The first turns were served from the log: only the two last turns asked the model.
    assert model_calls(tmp_path / "model.log") == 5
    again = answers_of(_child(store_url, tmp_path, "a,b", "-"))
    assert again == answers  # finished (or still in doubt): from the log, nothing called
    assert model_calls(tmp_path / "model.log") == 5
    assert provider_counts(tmp_path)["attempts"] == attempts


# -- in one process -----------------------------------------------------------------------


def _adapter(tmp_path: Path, **prices: Price) -> OpenAIAgentsAdapter:
    table = PriceTable(prices, defaults=False) if prices else None
    return OpenAIAgentsAdapter(CheckpointEngine(SQLiteStore(tmp_path / "runs.db")), prices=table)


def _config(model: OrderModel) -> RunConfig:
    return RunConfig(model_provider=Provider(model))


async def test_model_turns_are_recorded_with_tokens_and_cost(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, **{MODEL: Price(prompt=2.0, completion=8.0)})
    charged: list[str] = []

    @function_tool
    def charge(order: str, amount: int) -> str:
        """Charge an order."""
        charged.append(current_step().idempotency_key)
        return "ok"

    agent = Agent(name="orders", model=MODEL, tools=[charge])
    log = tmp_path / "model.log"
    result = await adapter.run(
        agent, "go", execution_id="e1", run_config=_config(OrderModel(log, ["a"]))
    )
    assert result.final_output == "done: ok"
    assert charged == ["e1/oai:tool:call-a"]  # the key is the node: run and call id
    nodes = await adapter.engine.list_nodes("e1")
    models = [n for n in nodes if n.type is NodeType.PROMPT]
    assert [(n.model, n.prompt_tokens, n.completion_tokens) for n in models] == [
        (MODEL, PROMPT_TOKENS, COMPLETION_TOKENS)
    ] * 2
    expected = (PROMPT_TOKENS * 2.0 + COMPLETION_TOKENS * 8.0) / 1e6
    assert all(n.cost == pytest.approx(expected) for n in models)
    assert all(n.status is Status.SUCCESS and n.latency_ms is not None for n in models)
    tools = [n for n in nodes if n.type is NodeType.TOOL]
    assert [(n.id, n.status, n.output) for n in tools] == [
        ("e1/oai:tool:call-a", Status.SUCCESS, "ok")
    ]
    summary = (await adapter.runtime.executions(ids=["e1"]))[0]
    assert summary.cost == pytest.approx(2 * expected)
    # Run again, finished: the SDK's own result, from the log alone.
    again = await adapter.run(
        agent, "go", execution_id="e1", run_config=_config(OrderModel(log, ["a"]))
    )
    assert again.final_output == "done: ok"
    assert model_calls(log) == 2
    assert charged == ["e1/oai:tool:call-a"]
    await adapter.runtime.close()


async def test_mock_tools_replay_serves_the_recording_and_drift_is_named(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)
    charged: list[str] = []

    @function_tool
    def charge(order: str, amount: int) -> str:
        """Charge an order."""
        charged.append(order)
        return f"receipt for {order}"

    agent = Agent(name="orders", model=MODEL, tools=[adapter.tool(charge)])
    log = tmp_path / "model.log"
    await adapter.run(agent, "go", execution_id="e1", run_config=_config(OrderModel(log, ["a"])))
    before = await adapter.engine.versions("e1")
    replayed = await adapter.run(
        agent, "go", execution_id="r1", replay_of="e1", run_config=_config(OrderModel(log, ["a"]))
    )
    assert replayed.final_output == "done: receipt for a"
    assert charged == ["a"]  # served from e1's recording: the real tool did not run
    assert model_calls(log) == 4  # the models run live in a replay
    assert len(await adapter.engine.versions("e1")) == len(before)  # never written to
    tool = await adapter.engine.load("r1/oai:tool:call-a")
    assert tool is not None
    assert tool.node.metadata["mocked"] is True
    (linked,) = await adapter.runtime.executions(ids=["r1"])
    assert linked.replay_of == "e1"  # listed, shown and kept as a replay of e1
    with pytest.raises(ReplayDivergedError, match="closest recorded call is tool 'charge'"):
        await adapter.run(
            agent,
            "go",
            execution_id="r2",
            replay_of="e1",
            run_config=_config(OrderModel(log, ["z"])),
        )
    assert charged == ["a"]
    with pytest.raises(ExecutionNotFoundError, match="no execution 'nowhere'"):
        await adapter.run(agent, "go", execution_id="r3", replay_of="nowhere")
    await adapter.runtime.close()


async def test_runtime_replay_works_on_adapter_runs(tmp_path: Path) -> None:
    """runtime.replay of an adapter run: MOCK_TOOLS serves the tools (the models live),
    mock_llm the model turns too; the modes that pick steps by position are refused."""
    adapter = _adapter(tmp_path)
    charged: list[str] = []

    @function_tool
    def charge(order: str, amount: int) -> str:
        """Charge an order."""
        charged.append(order)
        return f"receipt for {order}"

    agent = Agent(name="orders", model=MODEL, tools=[adapter.tool(charge)])
    log = tmp_path / "model.log"
    await adapter.run(agent, "go", execution_id="e1", run_config=_config(OrderModel(log, ["a"])))
    mocked = await adapter.runtime.replay("e1", "MOCK_TOOLS")
    assert (mocked.error, mocked.result) == (None, "done: receipt for a")
    assert charged == ["a"]
    assert model_calls(log) == 4
    both = await adapter.runtime.replay("e1", "MOCK_TOOLS", mock_llm=True)
    assert (both.error, both.result) == (None, "done: receipt for a")
    assert (charged, model_calls(log)) == (["a"], 4)  # nothing live at all
    turns = [
        n for n in await adapter.engine.list_nodes(both.execution_id) if n.type is NodeType.PROMPT
    ]
    assert [turn.metadata.get("mocked") for turn in turns] == [True, True]
    full = await adapter.runtime.replay("e1", "FULL")
    assert (full.error, charged) == (None, ["a", "a"])  # FULL runs the tools for real
    with pytest.raises(StepNotFoundError, match="it has no steps"):
        await adapter.runtime.replay("e1", "FROM_NODE", from_step=0)
    await adapter.runtime.close()


async def test_handoffs_and_agents_as_tools_are_recorded(tmp_path: Path) -> None:
    """Each turn is recorded by the agent that made it, an agent run as a tool's too, and
    that agent's wrapped tools go through the write-ahead protocol as well."""
    adapter = _adapter(tmp_path)
    log = tmp_path / "model.log"
    keys: list[str] = []

    @function_tool
    def charge(order: str, amount: int) -> str:
        """Charge an order."""
        keys.append(current_step().idempotency_key)
        return "charged"

    clerk = Agent(
        name="clerk", model="clerk-model", tools=[adapter.tool(charge, retry_with_key=True)]
    )
    helper = clerk.as_tool(tool_name="clerk_tool", tool_description="ask the clerk")
    boss = Agent(name="boss", model="boss-model", tools=[helper])
    ask = OrderModel(log, ["a"], tool="clerk_tool", arguments={"input": "charge a"})
    models: dict[str, Model] = {"boss-model": ask, "clerk-model": OrderModel(log, ["b"])}
    config = RunConfig(model_provider=Provider(ask, models), tracing_disabled=True)
    result = await adapter.run(boss, "go", execution_id="e1", run_config=config)
    assert result.final_output == "done: done: charged"  # the clerk answered the boss
    nodes = await adapter.engine.list_nodes("e1")
    tools = {n.metadata.get("step"): n for n in nodes if n.type is NodeType.TOOL}
    assert set(tools) == {"clerk_tool", "charge"}  # the agent as a tool, and its tool
    assert tools["clerk_tool"].metadata["agent"] == "boss"
    assert tools["charge"].metadata["agent"] == "clerk"
    assert keys == ["e1/oai:tool:call-b"]
    turns = sorted(n.metadata["agent"] for n in nodes if n.type is NodeType.PROMPT)
    assert turns == ["boss", "boss", "clerk", "clerk"]  # the clerk's, inside the tool call

    desk = Agent(name="desk", model="boss-model", handoffs=[clerk])
    hand = OrderModel(log, ["a"], tool="transfer_to_clerk", arguments={})
    models = {"boss-model": hand, "clerk-model": OrderModel(log, ["b"])}
    config = RunConfig(model_provider=Provider(hand, models), tracing_disabled=True)
    result = await adapter.run(desk, "go", execution_id="e2", run_config=config)
    assert result.last_agent.name == "clerk"
    nodes = await adapter.engine.list_nodes("e2")
    (handoff,) = [n for n in nodes if n.type is NodeType.BRANCH]
    assert handoff.metadata["step"] == "handoff to clerk"
    assert (handoff.metadata["agent"], handoff.output) == ("desk", {"to": "clerk"})
    turns = sorted(n.metadata["agent"] for n in nodes if n.type is NodeType.PROMPT)
    assert turns == ["clerk", "desk"]
    await adapter.runtime.close()

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "livingai", "--store", url, "show", "e2"],
        capture_output=True,
        text=True,
        timeout=SECONDS,
        check=True,
    )
    shown = done.stdout
    assert "handoff to clerk" in shown
    assert "by desk" in shown
    assert "by clerk" in shown
    with TestClient(create_app(url)) as client:
        page = client.get("/executions/e1").text
        assert '<span class="agent">by clerk</span>' in page
        assert '<span class="agent">by boss</span>' in page
        api = client.get("/api/executions/e2").json()
    by = {node["name"]: node["agent"] for node in api["nodes"]}
    assert by["handoff to clerk"] == "desk"


async def test_bad_input_gets_a_clear_error(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)

    @function_tool
    def charge(order: str, amount: int) -> Any:
        """Charge an order."""
        return {"when": object()}  # not JSON

    agent = Agent(name="orders", model=MODEL, tools=[adapter.tool(charge)])
    config = _config(OrderModel(None, ["a"]))
    with pytest.raises(
        InvalidNodeError, match=r"step 'charge': its output cannot be stored: .*JSON-serialisable"
    ):
        await adapter.run(agent, "go", execution_id="e1", run_config=config)
    with pytest.raises(ConfigError, match=r"adapter\.tool wraps a FunctionTool"):
        adapter.tool(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="execution_id must be a non-empty string"):
        await adapter.run(agent, "go", execution_id="")
    with pytest.raises(ConfigError, match="runs an Agent"):
        await adapter.run("agent", "go", execution_id="e2")  # type: ignore[arg-type]
    await adapter.runtime.close()


async def test_a_second_worker_on_the_same_execution_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    first = OpenAIAgentsAdapter(Runtime(CheckpointEngine(SQLiteStore(path)), worker_id="w1"))
    second = OpenAIAgentsAdapter(Runtime(CheckpointEngine(SQLiteStore(path)), worker_id="w2"))
    raised: list[BaseException] = []

    @function_tool
    async def charge(order: str, amount: int) -> str:
        """Charge an order."""
        try:  # while the first worker is in its tool, the second one tries the run
            await second.run(agent, "go", execution_id="e1", run_config=config)
        except LeaseHeldError as exc:
            raised.append(exc)
        return "ok"

    agent = Agent(name="orders", model=MODEL, tools=[charge])
    config = _config(OrderModel(None, ["a"]))
    result = await first.run(agent, "go", execution_id="e1", run_config=config)
    assert result.final_output == "done: ok"
    assert len(raised) == 1
    assert "worker 'w1'" in str(raised[0])
    await first.runtime.close()
    await second.runtime.close()


async def test_a_run_with_a_session_cut_off_mid_tool_resumes_without_paying_again(
    tmp_path: Path,
) -> None:
    """The session the run was given already holds what the cut-off attempt added: run
    again, it reads the history as recorded (the model's input is the same, so the
    recorded turn is served) and adds each item once."""
    entered, release = asyncio.Event(), asyncio.Event()
    log = tmp_path / "model.log"

    @function_tool(name_override="charge")
    async def charge(order: str, amount: int) -> str:
        entered.set()
        await release.wait()
        return f"charged {order}"

    runtime = Runtime(CheckpointEngine(SQLiteStore(tmp_path / "s.db")), worker_id="w")
    try:
        adapter = OpenAIAgentsAdapter(runtime)
        agent = Agent(name="shop", tools=[charge])
        config = _config(OrderModel(log, ["a"]))
        session = adapter.session("user-1")
        cut = asyncio.ensure_future(
            adapter.run(agent, "buy", execution_id="s1", run_config=config, session=session)
        )
        async with asyncio.timeout(SECONDS):
            await entered.wait()
        cut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cut
        assert model_calls(log) == 1
        release.set()
        result = await adapter.run(
            agent, "buy", execution_id="s1", run_config=config, session=session
        )
        assert result.final_output == "done: charged a"
        assert model_calls(log) == 2  # the first turn came from the log
        kinds = [item.get("type") or item.get("role") for item in await session.get_items()]
        assert kinds == ["user", "function_call", "function_call_output", "message"]
        nodes = {node.id for node in await runtime.engine.list_nodes("s1")}
        assert {"s1/oai:session:get_items:1", "s1/oai:session:add_items:1"} <= nodes
    finally:
        await runtime.close()


async def test_livingai_recover_finishes_an_adapter_run_with_its_own_runtime(
    tmp_path: Path,
) -> None:
    """The command's runtime runs the agent a module registered with another adapter's:
    the run's records go through the command's store, the recorded turn is served."""
    entered = asyncio.Event()
    log = tmp_path / "model.log"

    @function_tool(name_override="charge")
    async def cut(order: str, amount: int) -> str:
        entered.set()
        await asyncio.Event().wait()  # cut off here
        raise AssertionError("not reached")

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    runtime = Runtime(CheckpointEngine(SQLiteStore(tmp_path / "runs.db")), worker_id="w")
    try:
        adapter = OpenAIAgentsAdapter(runtime)
        agent = Agent(name="shop", model=MODEL, tools=[cut])
        config = RunConfig(model_provider=Provider(OrderModel(log, ["a"])), tracing_disabled=True)
        started = asyncio.ensure_future(
            adapter.run(agent, "buy", execution_id="c1", run_config=config)
        )
        async with asyncio.timeout(SECONDS):
            await entered.wait()
        started.cancel()
        with pytest.raises(asyncio.CancelledError):
            await started
    finally:
        await runtime.close()
    command = [sys.executable, "-m", "livingai", "--store", url, "recover", "--json"]
    command += ["--agent", "tests.openai_agents.cli_agent:durable"]
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS,
        env={**os.environ, "LIVINGAI_TEST_MODEL_LOG": str(log)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (recovered,) = json.loads(done.stdout)
    assert (recovered["execution_id"], recovered["outcome"]) == ("c1", "finished")
    assert recovered["result"] == "done: charged a"
    assert model_calls(log) == 2  # the first turn came from the log


def test_run_sync_runs_durably_from_plain_code_and_refuses_a_running_loop(
    tmp_path: Path,
) -> None:
    adapter = _adapter(tmp_path)
    charged: list[str] = []

    @function_tool
    def charge(order: str, amount: int) -> str:
        """Charge an order."""
        charged.append(current_step().idempotency_key)
        return "ok"

    agent = Agent(name="orders", model=MODEL, tools=[adapter.tool(charge)])
    log = tmp_path / "model.log"
    config = _config(OrderModel(log, ["a"]))
    result = adapter.run_sync(agent, "go", execution_id="s1", run_config=config)
    assert result.final_output == "done: ok"
    again = adapter.run_sync(agent, "go", execution_id="s1", run_config=config)
    assert again.final_output == "done: ok"
    assert (model_calls(log), charged) == (2, ["s1/oai:tool:call-a"])  # the second from the log

    async def inside_a_loop() -> None:
        adapter.run_sync(agent, "go", execution_id="s2", run_config=config)

    with pytest.raises(WrongLoopError, match=r"running event loop.*await adapter\.run"):
        asyncio.run(inside_a_loop())
    assert model_calls(log) == 2  # refused before anything ran
    adapter.close()
