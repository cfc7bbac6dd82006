"""A real crash, recovered from disk: `python -m livingai.demo`.

The demo starts a child process whose agents checkpoint every step to SQLite, kills it
with SIGKILL mid-run (a real `kill -9`, POSIX only), then opens the file with a fresh
engine and shows where each run resumes, with which state, which steps would run again
and which side effects must not (the card was already charged). Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from . import (
    CheckpointEngine,
    ExecutionNode,
    NodeType,
    RecoveryEngine,
    RecoveryPlan,
    SQLiteStore,
    Status,
)

# One order per cycle: plan it, charge the card (not idempotent), remember the receipt.
CYCLE = ((NodeType.PROMPT, "plan"), (NodeType.TOOL, "charge_card"), (NodeType.MEMORY, "remember"))
CUSTOMERS = ("alice", "bob", "carol", "dave", "erin")


# -- the child: agents that checkpoint every step until they are killed ---------------


async def agent(engine: CheckpointEngine, customer: str, steps: int) -> None:
    """One run: PROMPT saves the agent's state, TOOL its receipt, MEMORY what it noted."""
    execution_id = f"{customer}-{uuid.uuid4().hex[:6]}"
    print(f"start {execution_id}", flush=True)
    memory: dict[str, Any] = {"customer": customer, "receipts": []}
    parent: str | None = None
    for step in range(steps):
        await asyncio.sleep(random.uniform(0.02, 0.08))  # model latency: the kill lands mid-run
        kind, name = CYCLE[step % len(CYCLE)]
        node = ExecutionNode(
            execution_id=execution_id,
            type=kind,
            parent_id=parent,
            status=Status.SUCCESS,
            metadata={"step": step, "name": name},
        )
        state = None
        if kind is NodeType.PROMPT:
            memory["plan"] = f"order {step // len(CYCLE) + 1}: charge {customer} $20"
            state = json.dumps(memory).encode()
        elif kind is NodeType.TOOL:
            receipt = f"R-{uuid.uuid4().hex[:8].upper()}"
            node.output = {"receipt": receipt}
            memory["receipts"].append(receipt)
        else:
            node.output = {"remembered": memory["receipts"][-1]}
        if not await engine.save(node, state=state):
            await engine.flush()  # committed late: acknowledge it only once it is stored
        print(f"ack {execution_id} {node.id} {step}", flush=True)
        parent = node.id


async def child(db: str, agents: int, steps: int) -> None:
    async with CheckpointEngine(SQLiteStore(db)) as engine:
        names = [CUSTOMERS[i % len(CUSTOMERS)] for i in range(agents)]
        await asyncio.gather(*(agent(engine, name, steps) for name in names))
    print("done", flush=True)


# -- the parent: start the child, kill it, recover ------------------------------------


def run_and_kill(
    db: str, agents: int, steps: int, kill_after: int
) -> tuple[list[str], dict[str, str]]:
    """Kill the child after its kill_after-th acknowledged save; return the runs it started
    and every save it acknowledged (node id -> execution id), read from its stdout."""
    command = [sys.executable, "-m", "livingai.demo", "--child", "--db", db]
    command += ["--agents", str(agents), "--steps", str(steps)]
    started: list[str] = []
    acked: dict[str, str] = {}

    def take(line: str) -> None:
        word, *rest = line.split() or [""]
        if word == "start" and rest:
            started.append(rest[0])
        elif word == "ack" and len(rest) > 1:
            acked[rest[1]] = rest[0]

    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        print(f"child pid {proc.pid}: {agents} agents, {steps} steps each, saving to SQLite")
        for line in proc.stdout:
            take(line)
            if len(acked) == kill_after:
                os.kill(proc.pid, signal.SIGKILL)
                print(f"kill -9 {proc.pid} after {kill_after} acknowledged saves")
                break
        for line in proc.stdout:  # what it printed before it died was acknowledged too
            take(line)
    if proc.returncode == -signal.SIGKILL:
        print(f"child died of SIGKILL mid-run; it had acknowledged {len(acked)} saves")
    else:
        print(f"child exited by itself (code {proc.returncode}) before the kill")
    return started, acked


def step_of(node: ExecutionNode) -> int:
    return int(node.metadata.get("step", -1))


def describe(node: ExecutionNode) -> str:
    return f'step {step_of(node)} {node.type} "{node.metadata.get("name")}"'


def explain(plan: RecoveryPlan) -> list[str]:
    """The plan in words: resume point, state, steps to replay, side effects to skip."""
    lines = ["  resume   from the beginning (no checkpoint yet)"]
    if plan.resume_node is not None:
        node_id = plan.resume_node.id[:8]
        lines = [f"  resume   after {describe(plan.resume_node)} (node {node_id})"]
    if plan.state is not None:
        text = plan.state.decode(errors="replace")
        text = text if len(text) <= 64 else text[:61] + "..."
        lines.append(f"  state    {len(plan.state)} bytes: {text}")
    skipped = {node.id for node in plan.skipped_nodes}
    for node in sorted([*plan.replay_nodes, *plan.skipped_nodes], key=step_of):
        if node.id not in skipped:
            lines.append(f"  replay   {describe(node)}: idempotent, safe to run again")
            continue
        output = node.output
        done = json.dumps(output)
        if isinstance(output, dict) and "receipt" in output:
            done = f"receipt {output['receipt']}"
        name = node.metadata.get("name", node.type)
        how = "already done" if node.status is Status.SUCCESS else f"{node.status}, check it"
        lines.append(f"  skip     step {step_of(node)} {name}: skipped, {how}: {done}")
    if not plan.replay_nodes and not plan.skipped_nodes:
        lines.append("  next     nothing to replay or skip: continue with the next step")
    return lines


async def recover(db: str, started: list[str], acked: dict[str, str]) -> int:
    """Open the file with a fresh engine, plan every run's recovery, check the saves."""
    print(f"\nRecovering from {db} with a fresh engine:\n")
    async with CheckpointEngine(SQLiteStore(db)) as engine:
        recovery = RecoveryEngine(engine)
        stored = set(await engine.list_executions())
        for execution_id in started:
            if execution_id not in stored:
                print(f"{execution_id}: nothing stored yet; it starts from the beginning\n")
                continue
            steps = len(await engine.list_nodes(execution_id))
            print(f"{execution_id}: {steps} steps on disk")
            print("\n".join(explain(await recovery.plan(execution_id))), end="\n\n")
        found = 0
        for node_id in acked:
            found += await engine.load(node_id) is not None
    verdict = "OK" if found == len(acked) else "LOST WRITES"
    print(f"Acknowledged saves found on disk: {found} of {len(acked)}  {verdict}")
    return 0 if found == len(acked) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m livingai.demo", description=__doc__)
    parser.add_argument("--db", help="SQLite file to use (default: in a temp directory)")
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--steps", type=int, default=9, help="steps per agent")
    parser.add_argument("--kill-after", type=int, default=10, help="acknowledged saves")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(child(args.db, args.agents, args.steps))
        return 0
    with tempfile.TemporaryDirectory(prefix="livingai-demo-") as tmp:
        db = args.db or str(Path(tmp) / "demo.db")
        started, acked = run_and_kill(db, args.agents, args.steps, args.kill_after)
        return asyncio.run(recover(db, started, acked))


if __name__ == "__main__":
    sys.exit(main())
