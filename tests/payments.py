"""What the adapters' crash tests share (tests/openai_agents, tests/crewai): a fake
payment provider (tests/crash_runs_child.py's SQLite file, which records every attempt
and every charge by idempotency key and deduplicates on the key), the in-doubt policies
they run at once, and the parent's side: kill the child once it charged, read each run's
answer line and what the provider saw."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from livingai import NOT_DONE, StepContext, current_step
from tests.crash_runs_child import provider

POLICIES = ("retry_with_key", "reconcile", "default")
SECONDS = 60.0


def charge_at(path: str, order: str, amount: int) -> str:
    """Charge `order` under the running tool's idempotency key: its receipt (the first
    charge's, when the key was charged before)."""
    key = current_step().idempotency_key
    with closing(provider(path)) as conn:
        conn.execute("INSERT INTO attempts VALUES (?, ?, ?)", (key, order, time.time()))
        row = conn.execute("SELECT receipt FROM charges WHERE key = ?", (key,)).fetchone()
        if row is None:
            receipt = f"R-{order}-{time.time_ns()}"
            conn.execute("INSERT INTO charges VALUES (?, ?, ?, ?)", (key, order, receipt, amount))
        else:
            receipt = row[0]
    return json.dumps({"receipt": receipt})


def reconcile_at(path: str, step: StepContext) -> Any:
    """Whether the charge under this key happened: its answer, or NOT_DONE."""
    with closing(provider(path)) as conn:
        key = step.idempotency_key
        row = conn.execute("SELECT receipt FROM charges WHERE key = ?", (key,)).fetchone()
    return NOT_DONE if row is None else json.dumps({"receipt": row[0]})


def policy_options(policy: str, path: str) -> dict[str, Any]:
    """adapter.tool's options for one of POLICIES."""
    if policy == "retry_with_key":
        return {"retry_with_key": True}
    if policy == "reconcile":
        return {"reconcile": lambda step: reconcile_at(path, step)}
    return {}


def killed_once_charged(child: subprocess.Popen[str], orders: set[str]) -> None:
    """Wait until each of `orders` was charged in the child (it prints `charged
    <order>`), then SIGKILL it there."""
    assert child.stdout is not None
    waiting = set(orders)
    for line in child.stdout:  # a framework may print on the same line before it
        found = re.search(r"charged (\S+)$", line.strip())
        if found:
            waiting.discard(found.group(1))
        if not waiting:
            break
    else:
        pytest.fail(f"the child ended before charging {waiting}: {child.communicate()[1]}")
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=SECONDS)


def answers_of(child: subprocess.Popen[str]) -> dict[str, dict[str, Any]]:
    """Each run's JSON line, by policy."""
    out, err = child.communicate(timeout=SECONDS)
    assert child.returncode == 0, err[-3000:]
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {line.pop("policy"): line for line in lines}


def provider_counts(folder: Path) -> dict[str, Any]:
    """What the provider in `folder` saw: attempts and charges by order, and receipts."""
    with closing(provider(str(folder / "provider.db"))) as conn:
        return {
            "attempts": dict(
                conn.execute("SELECT order_id, count(*) FROM attempts GROUP BY 1").fetchall()
            ),
            "charges": dict(
                conn.execute("SELECT order_id, count(*) FROM charges GROUP BY 1").fetchall()
            ),
            "receipts": dict(conn.execute("SELECT order_id, receipt FROM charges").fetchall()),
        }
