"""Crash torture: a worker running 20 orders is killed with SIGKILL at random moments and
started again until every order is done, on SQLite, Redis, a Redis Cluster (the
session's, tests/redis_cluster_support.py) and PostgreSQL, under both tool policies.
What must hold, from the store (never from the killed process's memory):

- retry_with_key: exactly one charge per order at the provider, and each order's result
  carries that charge's receipt;
- the default policy: the provider never sees two attempts for one order, and every
  order either finishes or raises InDoubtError;
- running everything once more after that calls no model and no provider at all.

Bounded: at most MAX_KILLS kills a case, a time limit, seeds printed on failure.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.services import ROOT
from tests.store_urls import fresh_store_url

MAX_KILLS = 6
SECONDS = 90.0  # the whole case, kills and restarts included
STORES = ["sqlite", "redis", "redis-cluster", "postgres"]
POLICIES = ["retry_with_key", "default"]


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_store_url(str(request.param), tmp_path, "livingai_crash") as url:
        yield url


def _start(url: str, provider: Path, policy: str, seed: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_runs_child", url, str(provider), policy, str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_to_the_end(url: str, provider: Path, policy: str, seed: int) -> list[dict[str, Any]]:
    """Run the worker without killing it; the line it printed for each order."""
    child = _start(url, provider, policy, seed)
    out, err = child.communicate(timeout=SECONDS)
    assert child.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "ready", out
    assert lines[-1] == "done", out
    return [json.loads(line) for line in lines[1:-1]]


def _counts(provider: Path) -> dict[str, Any]:
    with closing(sqlite3.connect(provider)) as conn:
        return {
            "llm": conn.execute("SELECT count(*) FROM llm_calls").fetchone()[0],
            "attempts": dict(
                conn.execute("SELECT order_id, count(*) FROM attempts GROUP BY 1").fetchall()
            ),
            "charges": dict(
                conn.execute("SELECT order_id, count(*) FROM charges GROUP BY 1").fetchall()
            ),
            "receipts": dict(conn.execute("SELECT order_id, receipt FROM charges").fetchall()),
        }


@pytest.mark.timeout(2 * SECONDS)
@pytest.mark.parametrize("policy", POLICIES)
def test_killed_again_and_again_every_order_ends_and_nothing_is_charged_twice(
    store_url: str, policy: str, tmp_path: Path
) -> None:
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    provider = tmp_path / "provider.db"
    context = f"seed {seed}, policy {policy}, store {store_url}"
    deadline = time.monotonic() + SECONDS
    kills = 0
    while kills < MAX_KILLS:
        assert time.monotonic() < deadline, f"out of time ({context})"
        child = _start(store_url, provider, policy, seed + kills)
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n", context
        try:
            _, err = child.communicate(timeout=rng.uniform(0.0, 0.25))
        except subprocess.TimeoutExpired:
            os.kill(child.pid, signal.SIGKILL)  # mid-run: a real kill -9
            child.communicate()
            kills += 1
            continue
        assert child.returncode == 0, f"{err} ({context})"
        break  # it finished by itself: nothing more to kill
    lines = _run_to_the_end(store_url, provider, policy, seed)
    before = _counts(provider)
    orders = {line["order"]: line for line in lines}
    assert len(orders) == 20, context
    if policy == "retry_with_key":
        assert all("result" in line for line in lines), (lines, context)
        assert set(before["charges"].values()) == {1}, (before, context)
        assert len(before["charges"]) == 20, context
        for order, line in orders.items():
            assert line["result"]["receipt"] == before["receipts"][order], context
    else:
        assert all("result" in line or "in_doubt" in line for line in lines), context
        assert set(before["attempts"].values()) <= {1}, (before["attempts"], context)
        for order, line in orders.items():
            if "result" in line:
                assert line["result"]["receipt"] == before["receipts"][order], context
    # Once more, after everything ended: nothing is called again.
    again = _run_to_the_end(store_url, provider, policy, seed)
    assert sorted(again, key=lambda line: line["order"]) == sorted(
        lines, key=lambda line: line["order"]
    ), context
    after = _counts(provider)
    assert after == before, context
    print(f"{context}: {kills} kills, {before['llm']} model calls")
