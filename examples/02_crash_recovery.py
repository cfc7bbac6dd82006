"""A crashed order agent, finished by a fresh process; the card is charged once.

    python examples/02_crash_recovery.py

The agent plans an order (a fake model), charges the card (a fake payment provider that
deduplicates on an idempotency key, as Stripe and most providers do) and sends a
confirmation. A child process runs it and is killed with a real SIGKILL after the
provider has charged the card but before the agent heard back. This process then runs the
same agent on the same execution: the plan is not made again, the charge is run again
with the same key (the provider answers with the charge it already made) and the
confirmation goes out. No API key, no network: everything is in a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from livingai import CheckpointEngine, Run, Runtime, SQLiteStore, current_step


class Provider:
    """A payment provider in a SQLite file: every charge is kept by idempotency key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS charges (key TEXT PRIMARY KEY, amount INT)")
            conn.execute("CREATE TABLE IF NOT EXISTS model_calls (prompt TEXT)")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own, committed (or rolled back) and then closed: a bare
        `with sqlite3.connect()` commits but leaves the connection open."""
        with contextlib.closing(sqlite3.connect(self.path)) as conn, conn:
            yield conn

    def charge(self, amount: int, *, answer_after: float = 0.0) -> dict[str, Any]:
        key = current_step().idempotency_key
        with self.transaction() as conn:
            new = conn.execute("INSERT OR IGNORE INTO charges VALUES (?, ?)", (key, amount))
        if new.rowcount:
            print(f"provider: card charged ${amount} (key {key})", flush=True)
        else:
            print(f"provider: key {key} was charged before: no new charge", flush=True)
        time.sleep(answer_after)  # a slow answer: the worker dies meanwhile
        return {"receipt": f"R-{key}", "amount": amount}

    def think(self, prompt: str) -> str:
        with self.transaction() as conn:
            conn.execute("INSERT INTO model_calls VALUES (?)", (prompt,))
        return f"charge ${json.loads(prompt)['amount']}"

    def counts(self) -> tuple[int, int]:
        with self.transaction() as conn:
            charges = conn.execute("SELECT count(*) FROM charges").fetchone()[0]
            calls = conn.execute("SELECT count(*) FROM model_calls").fetchone()[0]
        return int(charges), int(calls)


def order_agent(provider: Provider, answer_after: float) -> Any:
    async def order_agent(run: Run, order: dict[str, Any]) -> dict[str, Any]:
        plan = await run.step("plan", provider.think, json.dumps(order))
        receipt: dict[str, Any] = await run.tool(
            "charge",
            provider.charge,
            order["amount"],
            answer_after=answer_after,
            retry_with_key=True,  # in doubt after a crash: charge again with the same key
        )
        await run.step("notify", print, f"email: {plan}, receipt {receipt['receipt']}")
        return receipt

    return order_agent


async def run_order(folder: Path, answer_after: float) -> dict[str, Any]:
    provider = Provider(folder / "provider.db")
    engine = CheckpointEngine(SQLiteStore(folder / "agent.db"))
    async with Runtime(engine, worker_id="order-worker") as runtime:
        agent = order_agent(provider, answer_after)
        result: dict[str, Any] = await runtime.run(agent, {"amount": 42}, execution_id="order-42")
        return result


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        asyncio.run(run_order(Path(sys.argv[2]), answer_after=30.0))
        return 0
    with tempfile.TemporaryDirectory(prefix="livingai-example-") as tmp:
        folder = Path(tmp)
        print("1. a worker starts order-42 and is killed while the provider answers:")
        with subprocess.Popen(
            [sys.executable, __file__, "--child", str(folder)], stdout=subprocess.PIPE, text=True
        ) as child:
            assert child.stdout is not None
            for line in child.stdout:
                print("   child", line, end="")
                if line.startswith("provider: card charged"):
                    os.kill(child.pid, signal.SIGKILL)
                    print(f"   kill -9 {child.pid}")
                    break
        print("\n2. a fresh process (the same worker id: it takes the lease back at once)")
        print("   runs order-42 again:")
        receipt = asyncio.run(run_order(folder, answer_after=0.0))
        charges, model_calls = Provider(folder / "provider.db").counts()
        print(f"\nresult: {receipt}")
        print(f"charges at the provider: {charges}; model calls: {model_calls}")
        return 0 if (charges, model_calls) == (1, 1) else 1


if __name__ == "__main__":
    sys.exit(main())
