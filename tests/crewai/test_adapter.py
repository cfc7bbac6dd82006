"""CrewAIAdapter: crews kicked off as durable runs. A crew killed in its second task,
between two parallel tool calls, resumes in a fresh process without asking the LLM again
for recorded calls or charging twice; a tool whose intent cannot be written does not run;
LLM calls carry tokens, cost, agent and task; sync and async kickoff; bad input. No
network: a scripted LLM."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from crewai import Agent, Crew, Task
from crewai.tools import tool
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
    Runtime,
    SQLiteStore,
    Status,
    StoreOutageError,
    WrongLoopError,
    current_step,
    open_store,
)
from livingai.adapters.crewai import CrewAIAdapter
from livingai.testing.adapters import COMPLETION_TOKENS, MODEL, PROMPT_TOKENS
from livingai.web.app import create_app
from tests.crewai.crash_child import LOOKED_UP
from tests.crewai.fakes import (
    ScriptedLLM,
    llm_calls,
    tool_call,
    tool_outputs,
)
from tests.payments import POLICIES, answers_of, killed_once_charged, provider_counts
from tests.redis_support import RedisServer, redis_server_binary
from tests.services import ROOT, child

SECONDS = 60.0


def _child(url: str, tmp: Path, orders: str, hang: str) -> subprocess.Popen[str]:
    files = [str(tmp / "provider.db"), str(tmp / "llm.log")]
    return child("tests.crewai.crash_child", url, *files, orders, hang)


@pytest.mark.timeout(2 * SECONDS)
def test_crews_killed_in_their_second_task_between_parallel_tool_calls_resume_in_a_fresh_process(
    store_url: str, tmp_path: Path
) -> None:
    # One crew per policy, each killed in its second task with `a` done and `b` charged
    # but not answered (CrewAI ran the two calls of one LLM turn in parallel threads).
    killed_once_charged(_child(store_url, tmp_path, "a,b", "b"), {f"b@{p}" for p in POLICIES})
    log = tmp_path / "llm.log"
    assert llm_calls(log) == 3 * 3  # per crew: look up (tool, answer), then charge
    answers = answers_of(_child(store_url, tmp_path, "a,b", "-"))
    seen = provider_counts(tmp_path)
    assert seen["charges"] == {f"{o}@{p}": 1 for o in "ab" for p in POLICIES}
    attempts = seen["attempts"]
    assert all(attempts[f"a@{p}"] == 1 for p in POLICIES)  # done before: served
    # b was in flight. retry_with_key runs it again under the same key (the provider
    # deduplicates); reconcile looks the charge up; the default is in doubt, never run
    # again silently.
    assert [attempts[f"b@{p}"] for p in POLICIES] == [2, 1, 1]
    doubt = answers["default"]["in_doubt"]
    assert doubt.startswith("orders-default/crew:tool:"), doubt
    for policy in ("retry_with_key", "reconcile"):
        receipts = [json.dumps({"receipt": seen["receipts"][f"{o}@{policy}"]}) for o in "ab"]
        assert answers[policy]["result"] == "done: " + "; ".join(receipts)
        assert answers[policy]["tasks"][0] == LOOKED_UP  # the first task, from the log
    # The first task's calls and the charge turn were served from the log: only the two
    # crews that went on asked the LLM, once each (the charge task's answer).
    assert llm_calls(log) == 3 * 3 + 2
    again = answers_of(_child(store_url, tmp_path, "a,b", "-"))
    assert again == answers  # finished (or still in doubt): from the log, nothing called
    assert llm_calls(log) == 3 * 3 + 2
    assert provider_counts(tmp_path)["attempts"] == attempts


# -- in one process -----------------------------------------------------------------------


def _adapter(tmp_path: Path, **prices: Price) -> CrewAIAdapter:
    table = PriceTable(prices, defaults=False) if prices else None
    return CrewAIAdapter(CheckpointEngine(SQLiteStore(tmp_path / "runs.db")), prices=table)


def _charging_crew(adapter: CrewAIAdapter, log: Path, charged: list[str], **policy: Any) -> Crew:
    """One task: the LLM asks for `charge` once, then answers with its result."""

    @tool("charge")
    def charge(order: str, amount: int) -> str:
        """Charge an order."""
        charged.append(current_step().idempotency_key)
        return f"charged {order}"

    def respond(messages: list[dict[str, Any]], task: Any) -> Any:
        outputs = tool_outputs(messages)
        if not outputs:
            return [tool_call("charge", {"order": "o-1", "amount": 5}, "call-1")]
        return f"done: {outputs['call-1']}"

    agent = Agent(
        role="cashier",
        goal="Charge the order",
        backstory="You take payments.",
        llm=ScriptedLLM(respond, log),
        tools=[adapter.tool(charge, **policy)],
    )
    task = Task(name="pay", description="Charge order o-1", expected_output="a receipt")
    task.agent = agent
    return Crew(agents=[agent], tasks=[task])


async def test_llm_calls_are_recorded_with_tokens_cost_agent_and_task(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, **{MODEL: Price(prompt=2.0, completion=8.0)})
    charged: list[str] = []
    log = tmp_path / "llm.log"
    output = await adapter.kickoff_async(_charging_crew(adapter, log, charged), execution_id="c1")
    assert output.raw == "done: charged o-1"
    assert len(charged) == 1
    assert charged[0].startswith("c1/crew:tool:")  # the key is the node
    nodes = await adapter.engine.list_nodes("c1")
    llms = [n for n in nodes if n.type is NodeType.PROMPT]
    assert [(n.model, n.prompt_tokens, n.completion_tokens) for n in llms] == [
        (MODEL, PROMPT_TOKENS, COMPLETION_TOKENS)
    ] * 2
    expected = (PROMPT_TOKENS * 2.0 + COMPLETION_TOKENS * 8.0) / 1e6
    assert all(n.cost == pytest.approx(expected) for n in llms)
    assert {(n.metadata["agent"], n.metadata["task"]) for n in llms} == {("cashier", "pay")}
    (charge,) = [n for n in nodes if n.type is NodeType.TOOL]
    assert (charge.id, charge.status, charge.output) == (charged[0], Status.SUCCESS, "charged o-1")
    assert (charge.metadata["agent"], charge.metadata["wrapped"]) == ("cashier", True)
    summary = (await adapter.runtime.executions(ids=["c1"]))[0]
    assert summary.cost == pytest.approx(2 * expected)
    # Kicked off again, finished: CrewAI's own output, from the log alone, with the
    # tokens CrewAI counts for the calls it was served.
    again = await adapter.kickoff_async(_charging_crew(adapter, log, charged), execution_id="c1")
    assert again.raw == output.raw
    assert again.token_usage.prompt_tokens == output.token_usage.prompt_tokens == 2 * PROMPT_TOKENS
    assert (llm_calls(log), len(charged)) == (2, 1)
    await adapter.runtime.close()


def test_kickoff_runs_durably_from_plain_code_and_refuses_a_running_loop(
    tmp_path: Path,
) -> None:
    adapter = _adapter(tmp_path)
    charged: list[str] = []
    log = tmp_path / "llm.log"
    crew = _charging_crew(adapter, log, charged, retry_with_key=True)
    assert adapter.kickoff(crew, execution_id="s1").raw == "done: charged o-1"
    assert adapter.kickoff(crew, execution_id="s1").raw == "done: charged o-1"
    assert (llm_calls(log), len(charged)) == (2, 1)  # the second from the log

    async def inside_a_loop() -> None:
        adapter.kickoff(crew, execution_id="s2")

    with pytest.raises(WrongLoopError, match=r"await adapter\.kickoff_async"):
        asyncio.run(inside_a_loop())
    assert llm_calls(log) == 2  # refused before anything ran
    adapter.close()


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed")
async def test_a_failed_intent_write_stops_the_tool_and_the_kickoff(tmp_path: Path) -> None:
    """The store goes down after the LLM asked for the tool: its intent cannot be
    written, so the tool does not run (CrewAI's own hooks would let it run), and the
    kickoff raises the outage. Back up, the crew goes on and the tool runs once."""
    with RedisServer(tmp_path / "redis") as server:
        server.start()
        charged: list[str] = []
        log = tmp_path / "llm.log"
        engine = CheckpointEngine(open_store(f"{server.url}?prefix=crew-outage"))
        async with Runtime(engine, lease_seconds=3.0, store_outage_seconds=0.5) as runtime:
            adapter = CrewAIAdapter(runtime)
            crew = _charging_crew(adapter, log, charged, retry_with_key=True)
            llm = crew.agents[0].llm
            assert isinstance(llm, ScriptedLLM)
            asked = llm.respond

            def down_after_asking(messages: list[dict[str, Any]], task: Any) -> Any:
                answer = asked(messages, task)
                if isinstance(answer, list):
                    server.kill()  # the LLM asked for the charge; the store is gone
                return answer

            llm.respond = down_after_asking
            with pytest.raises(StoreOutageError, match=r"store_outage_seconds=0\.5"):
                await adapter.kickoff_async(crew, execution_id="o1")
            assert charged == []  # not run unprotected
            server.start()
            llm.respond = asked
            output = await adapter.kickoff_async(crew, execution_id="o1")
            assert output.raw == "done: charged o-1"
            assert len(charged) == 1


async def test_bad_input_gets_a_clear_error(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)
    crew = _charging_crew(adapter, tmp_path / "llm.log", [])
    with pytest.raises(ConfigError, match="runs a CrewAI Crew"):
        await adapter.kickoff_async("crew", execution_id="x")  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="inputs must be a dict"):
        await adapter.kickoff_async(crew, ["a"], execution_id="x")  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="execution_id must be a non-empty string"):
        await adapter.kickoff_async(crew, execution_id="")
    with pytest.raises(ConfigError, match="wraps a CrewAI BaseTool"):
        adapter.tool(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ExecutionNotFoundError, match="no execution 'nothing'"):
        await adapter.kickoff_async(crew, execution_id="r1", replay_of="nothing")
    streaming = _charging_crew(adapter, tmp_path / "llm.log", [])
    streaming.stream = True
    with pytest.raises(ConfigError, match="stream=False"):
        await adapter.kickoff_async(streaming, execution_id="x")
    assert await adapter.engine.list_nodes("x") == []  # nothing was stored

    @tool("opaque")
    def opaque() -> object:
        """Returns what JSON cannot hold."""
        return object()

    def respond(messages: list[dict[str, Any]], task: Any) -> Any:
        return "never" if tool_outputs(messages) else [tool_call("opaque", {}, "call-1")]

    agent = Agent(
        role="r",
        goal="g",
        backstory="b",
        llm=ScriptedLLM(respond),
        tools=[adapter.tool(opaque)],
    )
    task = Task(name="t", description="d", expected_output="e", agent=agent)
    with pytest.raises(InvalidNodeError, match="opaque"):
        await adapter.kickoff_async(Crew(agents=[agent], tasks=[task]), execution_id="j1")
    await adapter.runtime.close()


async def test_a_second_worker_on_the_same_execution_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    async with (
        Runtime(CheckpointEngine(open_store(url)), worker_id="w1") as first,
        Runtime(CheckpointEngine(open_store(url)), worker_id="w2") as second,
    ):
        started, release = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        adapter = CrewAIAdapter(first)

        @tool("wait")
        def wait() -> str:
            """Waits to be released."""
            loop.call_soon_threadsafe(started.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(SECONDS)
            return "released"

        def respond(messages: list[dict[str, Any]], task: Any) -> Any:
            return "done" if tool_outputs(messages) else [tool_call("wait", {}, "call-1")]

        agent = Agent(role="r", goal="g", backstory="b", llm=ScriptedLLM(respond), tools=[wait])
        crew = Crew(agents=[agent], tasks=[Task(description="d", expected_output="e", agent=agent)])
        running = asyncio.create_task(adapter.kickoff_async(crew, execution_id="shared"))
        await asyncio.wait_for(started.wait(), SECONDS)
        with pytest.raises(LeaseHeldError, match="w1"):
            await CrewAIAdapter(second).kickoff_async(crew, execution_id="shared")
        release.set()
        assert (await running).raw == "done"


async def test_livingai_recover_finishes_a_killed_kickoff_with_its_own_runtime(
    tmp_path: Path,
) -> None:
    """The command's runtime runs the crew a module registered with another adapter's:
    the kickoff's records go through the command's store, the recorded call is served."""
    log = tmp_path / "llm.log"
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    env = {**os.environ, "LIVINGAI_TEST_LLM_LOG": str(log)}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.crewai.cli_agent",
        url,
        "--hang",
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    async with asyncio.timeout(SECONDS):
        line = await child.stdout.readline()
    child.kill()
    _, err = await child.communicate()
    assert line == b"charging\n", err.decode()[-3000:]
    command = [sys.executable, "-m", "livingai", "--store", url, "recover", "--json"]
    command += ["--agent", "tests.crewai.cli_agent:durable"]
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (recovered,) = json.loads(done.stdout)
    assert (recovered["execution_id"], recovered["outcome"]) == ("c1", "finished")
    assert recovered["result"] == "done: charged a"
    assert llm_calls(log) == 2  # the first call came from the log


async def test_livingai_show_and_the_web_ui_show_tasks_roles_calls_and_tools(
    tmp_path: Path,
) -> None:
    """Two agents, a task each: every LLM and tool call sits under its task's node, named
    by its agent's role, in the log, `livingai show`, the web UI and its JSON API."""
    adapter = _adapter(tmp_path, **{MODEL: Price(prompt=2.0, completion=8.0)})
    researcher = Agent(
        role="researcher", goal="g", backstory="b", llm=ScriptedLLM(lambda m, t: "Zurich")
    )
    pay = _charging_crew(adapter, tmp_path / "llm.log", [])
    cashier, charging = pay.agents[0], pay.tasks[0]
    find = Task(name="find", description="Where to?", expected_output="a city", agent=researcher)
    crew = Crew(agents=[researcher, cashier], tasks=[find, charging])
    await adapter.kickoff_async(crew, execution_id="v1")
    nodes = {node.id: node for node in await adapter.engine.list_nodes("v1")}
    tasks = {n.metadata["step"]: n for n in nodes.values() if n.metadata.get("kind") == "task"}
    assert set(tasks) == {"task find", "task pay"}
    assert (tasks["task find"].status, tasks["task find"].output) == (Status.SUCCESS, "Zurich")
    assert tasks["task pay"].output == "done: charged o-1"
    assert (tasks["task find"].metadata["agent"], tasks["task pay"].metadata["agent"]) == (
        "researcher",
        "cashier",
    )
    under = {
        (nodes[n.parent_id].metadata["step"], n.type, n.metadata["agent"])
        for n in nodes.values()
        if n.type in (NodeType.PROMPT, NodeType.TOOL) and n.parent_id is not None
    }
    assert under == {
        ("task find", NodeType.PROMPT, "researcher"),
        ("task pay", NodeType.PROMPT, "cashier"),
        ("task pay", NodeType.TOOL, "cashier"),
    }
    await adapter.runtime.close()

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "livingai", "--store", url, "show", "v1"],
        capture_output=True,
        text=True,
        timeout=SECONDS,
        check=True,
    )
    shown = done.stdout
    for text in ("task find", "task pay", "by researcher", "by cashier", "charge", MODEL):
        assert text in shown, shown
    with TestClient(create_app(url)) as client:
        page = client.get("/executions/v1").text
        assert '<span class="agent">by researcher</span>' in page
        assert '<span class="agent">by cashier</span>' in page
        api = client.get("/api/executions/v1").json()
    by = {node["name"]: node["agent"] for node in api["nodes"]}
    assert (by["task find"], by["task pay"], by["charge"]) == ("researcher", "cashier", "cashier")
