"""Store outages and durable runs: an outage shorter than the bound never reaches
`runtime.run`'s caller; a longer one raises StoreOutageError, and the run finishes later.

Chaos: a private PostgreSQL or Redis server (Redis with appendfsync always) is crashed
(`pg_ctl -m immediate` is a SIGKILL of every server process here, and SIGKILL for Redis)
and started again, again and again, while two worker processes run 100 orders each. What
must hold, from the provider's own records: every order done, exactly one charge per
order, its result the provider's receipt, no error reaching the caller, and running the
orders again afterwards calls neither the model nor the provider.

Bounded: at most MAX_OUTAGES outages, a time limit for the case.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from livingai import CheckpointEngine, Run, Runtime, StoreOutageError, open_store
from tests.crash_runs_child import Services, set_up_provider
from tests.postgres_support import PrivateCluster
from tests.redis_support import RedisServer, redis_server_binary
from tests.services import ROOT, skip_or_fail

ORDERS = 100  # per worker
MAX_OUTAGES = 8
SECONDS = 120.0  # the whole chaos case


class Server(Protocol):
    def start(self) -> None: ...
    def kill(self) -> None: ...


@dataclass
class PrivateServer:
    """A private server the test may crash, and the store URL that reaches it."""

    server: Server
    url: str

    def crash(self) -> None:
        self.server.kill()

    def restart(self) -> None:
        self.server.start()


@pytest.fixture(params=["postgres", "redis"])
def private(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PrivateServer]:
    if request.param == "postgres":
        with PrivateCluster() as cluster:
            cluster.start()
            yield PrivateServer(cluster, f"{cluster.dsn}?schema=outages")
        return
    if redis_server_binary() is None:
        skip_or_fail("redis-server is not installed: the outage tests start their own")
    with RedisServer(tmp_path / "redis") as server:
        server.start()
        yield PrivateServer(server, f"{server.url}?prefix=outages")


def _worker(url: str, provider: Path, name: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.outage_child", url, str(provider), name, str(ORDERS)]
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _lines(child: subprocess.Popen[str], timeout: float) -> list[dict[str, Any]]:
    out, err = child.communicate(timeout=timeout)
    assert child.returncode == 0, err[-3000:]
    lines = out.splitlines()
    assert lines, err[-3000:]
    assert lines[-1] == "done", (out[-2000:], err[-3000:])
    return [json.loads(line) for line in lines[:-1]]


def _provider(path: Path) -> dict[str, Any]:
    with closing(sqlite3.connect(path)) as conn:
        return {
            "llm": conn.execute("SELECT count(*) FROM llm_calls").fetchone()[0],
            "attempts": conn.execute("SELECT count(*) FROM attempts").fetchone()[0],
            "charges": dict(
                conn.execute("SELECT order_id, count(*) FROM charges GROUP BY 1").fetchall()
            ),
            "receipts": dict(conn.execute("SELECT order_id, receipt FROM charges").fetchall()),
        }


@pytest.mark.timeout(2 * SECONDS)
def test_outages_shorter_than_the_bound_never_reach_the_caller(
    private: PrivateServer, tmp_path: Path
) -> None:
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    provider = tmp_path / "provider.db"
    set_up_provider(str(provider))
    workers = [_worker(private.url, provider, name) for name in ("a", "b")]
    deadline = time.monotonic() + SECONDS
    outages = 0
    while outages < MAX_OUTAGES and any(w.poll() is None for w in workers):
        assert time.monotonic() < deadline, f"out of time (seed {seed})"
        time.sleep(rng.uniform(1.0, 2.5))  # the chaos schedule: up for 1 to 2.5 s
        if all(w.poll() is not None for w in workers):
            break
        private.crash()
        outages += 1
        time.sleep(rng.uniform(0.1, 1.0))  # down for up to a second, then restarted
        private.restart()
    lines = [line for w in workers for line in _lines(w, deadline - time.monotonic())]
    context = f"seed {seed}, {outages} outages, {private.url}"
    assert outages >= 3, f"the workers finished before the outages began ({context})"
    errors = [line for line in lines if "error" in line]
    assert errors == [], (errors[:5], context)
    assert len(lines) == 2 * ORDERS, context
    before = _provider(provider)
    assert len(before["charges"]) == 2 * ORDERS, context
    assert set(before["charges"].values()) == {1}, context
    for line in lines:
        assert line["result"]["receipt"] == before["receipts"][line["order"]], context
    # Once more, the store up: every order answers from the log, nothing is called.
    again = [
        line for w in [_worker(private.url, provider, n) for n in "ab"] for line in _lines(w, 60)
    ]
    assert sorted(again, key=str) == sorted(lines, key=str), context
    after = _provider(provider)
    assert (after["llm"], after["attempts"]) == (before["llm"], before["attempts"]), context


@pytest.mark.timeout(120)
async def test_an_outage_longer_than_the_bound_raises_and_recovery_finishes_the_run(
    private: PrivateServer, tmp_path: Path
) -> None:
    provider = tmp_path / "provider.db"
    set_up_provider(str(provider))
    services = Services(str(provider), seed=1)
    engine = CheckpointEngine(open_store(private.url))
    async with Runtime(engine, lease_seconds=3.0, store_outage_seconds=1.0) as runtime:
        down = asyncio.Event()

        def charge(order_id: str, amount: int) -> dict[str, Any]:
            receipt = services.charge(order_id, amount)
            if not down.is_set():  # charged, and then the store goes: its outcome waits
                private.crash()
                down.set()
            return receipt

        @runtime.agent
        async def order_agent(run: Run, order: dict[str, Any]) -> dict[str, Any]:
            plan = await run.step("plan", services.plan, order)
            receipt = await run.tool(
                "charge", charge, order["id"], plan["charge"], retry_with_key=True
            )
            return {"receipt": receipt["receipt"]}

        started = time.perf_counter()
        with pytest.raises(StoreOutageError) as caught:
            await runtime.run(order_agent, {"id": "o1", "amount": 5}, execution_id="order-o1")
        assert time.perf_counter() - started >= 1.0
        assert caught.value.waited_seconds >= 1.0
        assert caught.value.store == repr(engine.store)
        assert "store_outage_seconds=1" in str(caught.value)
        await asyncio.to_thread(private.restart)
        recovered = await runtime.recover_pending()
        assert [(r.execution_id, r.outcome, r.error) for r in recovered] == [
            ("order-o1", "finished", None)
        ]
        charged = _provider(provider)
        assert charged["charges"] == {"o1": 1}
        assert recovered[0].result == {"receipt": charged["receipts"]["o1"]}
        # The outcome, queued while the store was down, landed once it was back (before
        # the run was taken back): the charge was not even tried again.
        assert charged["attempts"] == 1
