"""The web UI over a few recorded runs: browse them, open a step, compare, replay.

    pip install "livingai[ui]"
    python examples/06_web_ui.py                     # records, then serves until Ctrl-C
    python examples/06_web_ui.py --record-only       # records and prints; serves nothing
    python examples/06_web_ui.py --serve-seconds 30  # serves for 30 s, then stops

An order agent (a fake model plans and confirms the order on two models, a fake payment
provider charges the card, deduplicating on the idempotency key) runs a few orders into
a SQLite file: two that finish, one whose card is declined, and one whose worker is
killed with SIGKILL while the provider answers, finished by this process. Then the first
order is replayed with its tools and model served from the recording (MOCK_TOOLS), and
the UI is started on the file at http://127.0.0.1:8765 with actions allowed: log in with
the token it prints to replay or fork from the browser. No API key, no network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from livingai import (
    CheckpointEngine,
    Price,
    PriceTable,
    ReplayMode,
    Run,
    Runtime,
    SQLiteStore,
    current_step,
)

PRICES = PriceTable({"acme-small": Price(0.50, 1.50), "acme-large": Price(5.00, 15.00)})
ORDERS = {
    "order-1": {"item": "espresso machine", "amount": 249, "card": "ok"},
    "order-2": {"item": "coffee beans, 6 kg", "amount": 96, "card": "ok"},
    "order-3": {"item": "grinder", "amount": 180, "card": "declined"},
}
CRASHED = "order-4"  # its worker is killed while the provider answers
CRASHED_ORDER = {"item": "milk frother", "amount": 42, "card": "ok"}
WORKER = "shop-worker"  # the same id after the crash: the lease is taken back at once

Agent = Callable[..., Awaitable[Any]]


class CardDeclinedError(Exception):
    """The provider refused the card: the run fails, and the UI shows it FAILED."""


class Provider:
    """A payment provider in a SQLite file shared with the worker that crashes: every
    charge is kept by idempotency key, so charging again with the same key is harmless."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS charges (key TEXT PRIMARY KEY, amount INT)")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own, committed (or rolled back) and then closed: a bare
        `with sqlite3.connect()` commits but leaves the connection open."""
        with contextlib.closing(sqlite3.connect(self.path)) as conn, conn:
            yield conn

    def charge(self, amount: int, card: str, *, answer_after: float = 0.0) -> dict[str, Any]:
        if card == "declined":
            raise CardDeclinedError(f"card declined for ${amount}")
        key = current_step().idempotency_key
        with self.transaction() as conn:
            new = conn.execute("INSERT OR IGNORE INTO charges VALUES (?, ?)", (key, amount))
        if new.rowcount:
            print(f"provider: card charged ${amount} (key {key})", flush=True)
        else:
            print(f"provider: key {key} was charged before: no new charge", flush=True)
        time.sleep(answer_after)  # a slow answer: the worker dies meanwhile
        return {"receipt": f"R-{key}", "amount": amount}

    def charges(self) -> int:
        with self.transaction() as conn:
            return int(conn.execute("SELECT count(*) FROM charges").fetchone()[0])


def model(name: str, prompt: str, answer: str) -> dict[str, Any]:
    """A stand-in for a model call, answering as OpenAI-style clients do (a `model` name
    and a `usage` object), so the step is recorded with its tokens and priced."""
    return {
        "model": name,
        "choices": [{"message": {"content": answer}}],
        "usage": {"prompt_tokens": 60 + len(prompt) // 4, "completion_tokens": len(answer)},
    }


def make_agent(provider: Provider, answer_after: float = 0.0) -> Agent:
    async def order_agent(run: Run, order: dict[str, Any]) -> dict[str, Any]:
        prompt = f"Plan the order: {json.dumps(order)}"
        plan = await run.step("plan", model, "acme-small", prompt, f"charge ${order['amount']}")
        receipt: dict[str, Any] = await run.tool(
            "charge",
            provider.charge,
            order["amount"],
            order["card"],
            answer_after=answer_after,
            retry_with_key=True,  # in doubt after a crash: charge again with the same key
        )
        text = f"Thank you for ordering a {order['item']}. Receipt {receipt['receipt']}."
        note = await run.step("confirm", model, "acme-large", json.dumps(plan), text)
        return {"receipt": receipt["receipt"], "email": note["choices"][0]["message"]["content"]}

    return order_agent


def runtime_on(db: Path) -> Runtime:
    return Runtime(CheckpointEngine(SQLiteStore(db)), worker_id=WORKER, prices=PRICES)


async def run_crashing_order(folder: Path) -> None:
    """The child process: starts the order that will be killed mid-charge."""
    async with runtime_on(folder / "shop.db") as runtime:
        agent = make_agent(Provider(folder / "provider.db"), answer_after=30.0)
        await runtime.run(agent, CRASHED_ORDER, execution_id=CRASHED)


def crash_a_worker(folder: Path) -> None:
    """Run the crashing order in a child and SIGKILL it once the card is charged."""
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


async def record(folder: Path) -> None:
    """Every run the UI will show, printed one line each."""
    provider = Provider(folder / "provider.db")
    async with runtime_on(folder / "shop.db") as runtime:
        agent = runtime.agent(make_agent(provider))
        for execution_id, order in ORDERS.items():
            try:
                await runtime.run(agent, order, execution_id=execution_id)
            except CardDeclinedError as exc:
                print(f"{execution_id}: failed: {exc}")
            else:
                print(f"{execution_id}: done")
        print(f"{CRASHED}: a worker is killed while the provider charges the card:")
        crash_a_worker(folder)
        # The same worker id: its lease is taken back at once (another worker would wait).
        result = await runtime.run(agent, execution_id=CRASHED)
        print(f"{CRASHED}: finished by this process: receipt {result['receipt']}")
        replay = await runtime.replay("order-1", ReplayMode.MOCK_TOOLS, mock_llm=True)
        print(f"order-1: replayed with mocked tools and model as {replay.execution_id}")
        print(f"charges at the provider: {provider.charges()} (one per paid order)")
        print("\nthe executions:")
        for summary in await runtime.executions():
            link = f"  replay of {summary.replay_of}" if summary.replay_of else ""
            print(
                f"  {summary.execution_id:<32} {summary.status.value:<8} {summary.steps} steps"
                f"  ${summary.cost:.6f}{link}"
            )


def serve(db: Path, port: int, seconds: float | None) -> None:
    """The UI on the recording, actions allowed (log in with the printed token), until
    Ctrl-C or for `seconds`."""
    import uvicorn

    from livingai.web import create_app

    agent = make_agent(Provider(db.parent / "provider.db"))
    app = create_app(f"sqlite:///{db}", agents=[agent], allow_actions=True)

    class Server(uvicorn.Server):
        """Says where the UI is once it listens, not before."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                url = f"http://127.0.0.1:{port}"
                print(f"\nthe web UI: {url}  (log in with token {app.state.token})")
                print("Ctrl-C stops it", flush=True)
            if seconds is not None:
                asyncio.get_running_loop().call_later(seconds, setattr, self, "should_exit", True)

    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises Ctrl-C again once down
        server.run()
    print("the web UI stopped")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        asyncio.run(run_crashing_order(Path(sys.argv[2])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record-only", action="store_true", help="record, print, exit")
    parser.add_argument("--serve-seconds", type=float, help="stop serving after this long")
    parser.add_argument("--port", type=int, default=8765)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="livingai-example-") as tmp:
        folder = Path(tmp)
        asyncio.run(record(folder))
        if not options.record_only:
            serve(folder / "shop.db", options.port, options.serve_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
