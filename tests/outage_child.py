"""One worker process of the store-outage chaos test (tests/test_outages.py).

    python -m tests.outage_child STORE_URL PROVIDER_DB NAME ORDERS

It runs ORDERS durable orders one after another (`NAME-000`, ...), each `plan` (a fake
model), `charge` (a fake payment provider that deduplicates on the idempotency key; see
tests/crash_runs_child.py) with retry_with_key, and `notify`, with a 3 s lease, while the
test crashes and restarts the store's server. It prints one JSON line per order, its
result or the error that reached `runtime.run`'s caller, then `done`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from livingai import CheckpointEngine, Run, Runtime, open_store
from tests.crash_runs_child import Services, set_up_provider

LEASE_SECONDS = 3.0


async def main(url: str, path: str, name: str, orders: int) -> None:
    set_up_provider(path)
    services = Services(path, seed=len(name))
    async with Runtime(CheckpointEngine(open_store(url)), lease_seconds=LEASE_SECONDS) as runtime:

        @runtime.agent
        async def order_agent(run: Run, order: dict[str, Any]) -> dict[str, Any]:
            plan = await run.step("plan", services.plan, order)
            receipt = await run.tool(
                "charge", services.charge, order["id"], plan["charge"], retry_with_key=True
            )
            note = await run.step("notify", services.notify, receipt)
            return {"receipt": receipt["receipt"], "note": note}

        for number in range(orders):
            order = {"id": f"{name}-{number:03d}", "amount": 10 + number}
            line: dict[str, Any] = {"order": order["id"]}
            try:
                line["result"] = await runtime.run(
                    order_agent, order, execution_id=f"order-{order['id']}"
                )
            except Exception as exc:  # what the caller would have to handle itself
                line["error"] = f"{type(exc).__name__}: {exc}"
            print(json.dumps(line), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    url, path, name, orders = sys.argv[1:5]
    asyncio.run(main(url, path, name, int(orders)))
