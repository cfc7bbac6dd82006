"""Pydantic AI runs with the rest of livingai: `livingai recover` finishes a killed run
under the command's own runtime; `runtime.recover_pending()` and `runtime.replay` take
them as any run; `livingai show`, `livingai costs` and the web UI show the model requests
and tool calls by name, agent, tokens and cost. SQLite in tmp_path, scripted models."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic_ai import Agent

from livingai import CheckpointEngine, NodeType, ReplayMode, Runtime, SQLiteStore, Status
from livingai.adapters.pydantic_ai import LivingAIDurability
from livingai.web import create_app
from tests.pydantic_ai.fakes import order_model, requests
from tests.services import ROOT

SECONDS = 60.0


def livingai(url: str, *arguments: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "livingai", "--store", url, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def killed_in_its_charge(url: str, env: dict[str, str]) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.pydantic_ai.cli_agent",
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


@pytest.mark.timeout(3 * SECONDS)
async def test_livingai_recover_finishes_a_killed_run_and_every_view_shows_it(
    tmp_path: Path,
) -> None:
    log = tmp_path / "model.log"
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    env = {**os.environ, "LIVINGAI_TEST_MODEL_LOG": str(log)}
    await killed_in_its_charge(url, env)
    assert requests(log) == 1
    pending = json.loads(livingai(url, "pending", "--json"))
    assert [(p["execution_id"], p["agent"]) for p in pending] == [("p1", "pydantic_ai:shop")]
    recovered = json.loads(
        livingai(
            url, "recover", "--json", "--agent", "tests.pydantic_ai.cli_agent:durable", env=env
        )
    )
    assert [(r["execution_id"], r["outcome"]) for r in recovered] == [("p1", "finished")]
    assert recovered[0]["result"] == "done: charged a"
    assert requests(log) == 2  # the first request came from the log

    shown = livingai(url, "show", "p1")
    for text in ("model scripted", "charge", "by shop", "tool"):
        assert text in shown, shown
    costs = json.loads(livingai(url, "costs", "--json", "--by", "model"))
    (scripted,) = [row for row in costs if row["key"] == "scripted"]
    assert scripted["calls"] == 2
    assert scripted["cost"] > 0
    with TestClient(create_app(url)) as client:
        page = client.get("/executions/p1").text
        assert '<span class="agent">by shop</span>' in page
        api = client.get("/api/executions/p1").json()
    names = {node["name"]: node["agent"] for node in api["nodes"]}
    assert (names["charge"], names["model scripted"]) == ("shop", "shop")


async def test_recover_pending_and_replay_take_a_pydantic_ai_run(tmp_path: Path) -> None:
    log = tmp_path / "model.log"
    async with Runtime(CheckpointEngine(SQLiteStore(tmp_path / "runs.db"))) as runtime:
        durability = LivingAIDurability(runtime)
        charged: list[str] = []

        def charge(order: str, amount: int) -> str:
            """Charge an order."""
            charged.append(order)
            return f"charged {order}"

        agent = Agent(
            order_model(["a"], log),
            name="shop",
            tools=[durability.tool(charge, retry_with_key=True)],
            capabilities=[durability],
        )
        durability.register(agent)
        assert await runtime.recover_pending() == []
        first = await durability.run(agent, "charge order a", execution_id="r1")
        assert (first.output, charged, requests(log)) == ("done: charged a", ["a"], 2)
        replayed = await runtime.replay("r1", ReplayMode.MOCK_TOOLS)
        assert replayed.result == "done: charged a"
        assert charged == ["a"]  # served from the recording
        assert requests(log) == 4  # the model ran again
        tools = [
            n
            for n in await runtime.engine.list_nodes(replayed.execution_id)
            if n.type is NodeType.TOOL
        ]
        assert [(t.status, t.metadata.get("mocked")) for t in tools] == [(Status.SUCCESS, True)]
