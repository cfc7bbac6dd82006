"""One worker process of the crash torture test (tests/test_crash_runs.py).

    python -m tests.crash_runs_child STORE_URL PROVIDER_DB POLICY SEED

It runs 20 orders concurrently, each `plan` (a fake model that counts its calls),
`charge` (a fake payment provider in its own SQLite file, which records every attempt
and every charge by idempotency key, deduplicates on the key, and sometimes sleeps after
charging before it answers) and `notify`. POLICY is `retry_with_key` or `default` (no
retry, no reconcile). It prints `ready` once it is set up, then one JSON line per
order (its result, or the error it ended with), then `done`. The parent kills it at
random moments and starts it again until a run of it prints `done`.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from livingai import CheckpointEngine, InDoubtError, Run, Runtime, current_step, open_store

ORDERS = 20
WORKER = "crash-worker"  # the same id at every start: a restart takes its runs back at once


def provider(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=30, isolation_level=None)


def set_up_provider(path: str) -> None:
    """Once, before any thread connects: switching the journal mode takes a lock that
    connections opening at the same moment may not wait for."""
    conn = provider(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS llm_calls (order_id TEXT, at REAL)")
        conn.execute("CREATE TABLE IF NOT EXISTS attempts (key TEXT, order_id TEXT, at REAL)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS charges "
            "(key TEXT PRIMARY KEY, order_id TEXT, receipt TEXT, amount INTEGER)"
        )
    finally:
        conn.close()


class Services:
    """The outside world: a model and a payment provider, both counting what they do."""

    def __init__(self, path: str, seed: int) -> None:
        self.path = path
        self.rng = random.Random(seed)

    def plan(self, order: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.rng.uniform(0.005, 0.05))  # the model thinks
        conn = provider(self.path)
        try:
            conn.execute("INSERT INTO llm_calls VALUES (?, ?)", (order["id"], time.time()))
        finally:
            conn.close()
        return {"charge": order["amount"]}

    def charge(self, order_id: str, amount: int) -> dict[str, Any]:
        key = current_step().idempotency_key
        conn = provider(self.path)
        try:
            conn.execute("INSERT INTO attempts VALUES (?, ?, ?)", (key, order_id, time.time()))
            row = conn.execute("SELECT receipt FROM charges WHERE key = ?", (key,)).fetchone()
            if row is not None:  # seen this key: the same charge, not a new one
                return {"receipt": row[0]}
            receipt = f"R-{order_id}-{self.rng.randrange(10**6)}"
            conn.execute(
                "INSERT INTO charges VALUES (?, ?, ?, ?)", (key, order_id, receipt, amount)
            )
        finally:
            conn.close()
        if self.rng.random() < 0.5:
            time.sleep(self.rng.uniform(0.01, 0.15))  # charged, not answered yet: a kill
            # here leaves the charge made and its outcome unrecorded
        return {"receipt": receipt}

    def notify(self, receipt: dict[str, Any]) -> str:
        return f"sent {receipt['receipt']}"


async def main(url: str, path: str, policy: str, seed: int) -> None:
    set_up_provider(path)
    services = Services(path, seed)
    options: dict[str, Any] = {"retry_with_key": policy == "retry_with_key"}
    async with Runtime(CheckpointEngine(open_store(url)), worker_id=WORKER) as runtime:

        @runtime.agent
        async def order_agent(run: Run, order: dict[str, Any]) -> dict[str, Any]:
            plan = await run.step("plan", services.plan, order)
            receipt = await run.tool(
                "charge", services.charge, order["id"], plan["charge"], **options
            )
            note = await run.step("notify", services.notify, receipt)
            return {"receipt": receipt["receipt"], "note": note}

        async def one(number: int) -> dict[str, Any]:
            order = {"id": f"o{number:02d}", "amount": 10 + number}
            try:
                result = await runtime.run(order_agent, order, execution_id=f"order-{number:02d}")
            except InDoubtError as exc:
                return {"order": order["id"], "in_doubt": exc.idempotency_key}
            return {"order": order["id"], "result": result}

        print("ready", flush=True)  # the parent's kill clock starts here
        for line in await asyncio.gather(*(one(n) for n in range(ORDERS))):
            print(json.dumps(line), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    url, path, policy, seed = sys.argv[1:5]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(url, path, policy, int(seed)))
