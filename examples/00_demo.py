"""A worker killed mid-charge, its orders finished by a fresh process: every card charged once.

    python examples/00_demo.py

Three orders run as livingai durable runs. Each asks a model for a plan (`run.step`: at
least once), charges the card (`run.tool(..., retry_with_key=True)`: its intent is on
disk before the charge, and a charge in doubt is made again with the same idempotency key,
which the provider deduplicates on, as Stripe does) and emails the receipt (`run.step`).
A worker process takes all three at once and is killed with SIGKILL, a real `kill -9`,
while order-2's charge is in flight (the provider has charged the card, the worker has
not heard back) and order-3's model call is in flight. A fresh process then finds the
two unfinished runs in the store and finishes them: order-2's plan comes from the log,
its charge is in doubt and is sent again with the same key (no second charge), and
order-3 asks the model again, since its first call was cut off. The model and the
provider are fakes that keep their calls in a SQLite file the kill does not reset: no API
key, no network. The store is SQLite in a temporary directory unless --store names one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from livingai import CheckpointEngine, Run, Runtime, current_step, open_store

ORDERS = {"order-1": 42, "order-2": 17, "order-3": 99}  # execution id -> amount in dollars
WORKER = "order-worker"  # one worker id in both processes: it takes its leases back at once


class World:
    """The model and the payment provider: fakes keeping every call in a SQLite file.

    In the worker that is killed (`hang=True`), the provider never answers order-2 after
    charging it and the model never answers order-3: the kill lands while they wait."""

    def __init__(self, path: Path, *, hang: bool = False) -> None:
        self.path, self.hang = path, hang
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS charges (key TEXT PRIMARY KEY, amount INT)")
            db.execute("CREATE TABLE IF NOT EXISTS model_calls (execution TEXT)")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with contextlib.closing(sqlite3.connect(self.path)) as db, db:
            yield db

    def plan(self, order: str, amount: int) -> str:
        """The model call (runs on a thread: it is a sync function)."""
        with self.transaction() as db:
            db.execute("INSERT INTO model_calls VALUES (?)", (order,))
        say(f"model: asked for a plan for {order}")
        if self.hang and order == "order-3":
            threading.Event().wait()  # the model is slow to answer: the kill comes first
        return f"charge ${amount} for {order}"

    def charge(self, amount: int) -> dict[str, Any]:
        """The provider: one charge per idempotency key, whatever is sent."""
        key = current_step().idempotency_key  # "<execution id>/<step position>"
        with self.transaction() as db:
            new = db.execute("INSERT OR IGNORE INTO charges VALUES (?, ?)", (key, amount))
        if new.rowcount:
            say(f"provider: card charged ${amount} (key {key})")
        else:
            say(f"provider: key {key} was charged before: no new charge")
        if self.hang and key.startswith("order-2/"):
            threading.Event().wait()  # charged, but the answer never comes back: the kill
        return {"receipt": f"R-{key}", "amount": amount}

    def counts(self, order: str) -> tuple[int, int]:
        """How many model calls and charges the order cost."""
        with self.transaction() as db:
            calls = db.execute("SELECT count(*) FROM model_calls WHERE execution = ?", (order,))
            charges = db.execute("SELECT count(*) FROM charges WHERE key LIKE ?", (f"{order}/%",))
            return int(calls.fetchone()[0]), int(charges.fetchone()[0])


def say(line: str) -> None:
    print(f"   {line}", flush=True)


def order_agent(world: World) -> Any:
    async def order_agent(run: Run, order: str, amount: int) -> dict[str, Any]:
        plan = await run.step("plan", world.plan, order, amount)  # at least once
        # in doubt after a crash: charged again with the same key (the provider dedups)
        receipt: dict[str, Any] = await run.tool(
            "charge", world.charge, amount, retry_with_key=True
        )
        await run.step("email", say, f"email: {plan}: receipt {receipt['receipt']}")
        return receipt

    return order_agent


async def worker(url: str, folder: Path) -> None:
    """The worker that is killed: it runs the three orders at once."""
    world = World(folder / "world.db", hang=True)
    async with Runtime(CheckpointEngine(open_store(url)), worker_id=WORKER) as runtime:
        agent = runtime.agent(order_agent(world))

        async def one(order: str) -> None:
            await runtime.run(agent, order, ORDERS[order], execution_id=order)
            say(f"{order}: finished")

        await asyncio.gather(*(one(order) for order in ORDERS))


async def recover(url: str, folder: Path) -> int:
    """A fresh process: find the runs the crash left unfinished and finish them."""
    world = World(folder / "world.db")
    async with Runtime(CheckpointEngine(open_store(url)), worker_id=WORKER) as runtime:
        agent = runtime.agent(order_agent(world))  # by name: recover_pending() runs it
        pending = [run.execution_id for run in await runtime.pending()]
        print(f"   unfinished in the store: {', '.join(sorted(pending))}")
        for outcome in await runtime.recover_pending(concurrency=1):
            say(f"{outcome.execution_id}: {outcome.outcome}")
        print("\n3. what each order cost (the model and the provider count their calls):")
        ok = True
        for order, amount in ORDERS.items():
            result = await runtime.run(agent, execution_id=order)  # finished: from the log
            calls, charges = world.counts(order)
            note = {
                "order-2": "charge in doubt after the kill: sent again with its key",
                "order-3": "its first model call was cut off by the kill: asked again",
            }.get(order, "finished before the kill")
            print(f"   {order}  ${amount:<3} charges: {charges}  model calls: {calls}  {note}")
            ok &= charges == 1 and result["receipt"] == f"R-{order}/1"
    verdict = "OK" if ok else "WRONG"
    print(f"\nevery order charged exactly once, with its receipt: {verdict}")
    return 0 if ok else 1


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        folder = Path(sys.argv[2])
        asyncio.run(worker(f"sqlite:///{folder / 'agent.db'}", folder))
        return 0
    with tempfile.TemporaryDirectory(prefix="livingai-demo-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'agent.db'}"
        command = [sys.executable, __file__, "--worker", tmp]
        print("1. a worker process takes three orders and is killed mid-charge:")
        waiting = {"order-1: finished", "card charged $17", "plan for order-3"}
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
            assert child.stdout is not None
            for line in child.stdout:
                print(line, end="")
                waiting = {event for event in waiting if event not in line}
                if not waiting:  # order-1 done, order-2 charged, order-3 asking the model
                    os.kill(child.pid, signal.SIGKILL)
                    break
        if child.returncode != -signal.SIGKILL:
            print(f"   the worker ended by itself (exit status {child.returncode})")
            return 1
        print(f"   kill -9 {child.pid}: order-2's charge and order-3's model call were in flight")
        print(f"\n2. this process (pid {os.getpid()}, not the worker) opens the store afresh:")
        return asyncio.run(recover(url, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
