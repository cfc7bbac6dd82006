"""The processes of tests/test_crash.py, run as `python tests/crash_child.py MODE ...`.

  run     agents save checkpoints to SQLite until the test SIGKILLs this process
  exit    agents save, then main() returns with writes queued: no close(), no flush();
          the loop ends by asyncio.run() or, with --loop unclosed, is never closed
  verify  a fresh process opens the file and prints, as JSON, every broken promise

Every save prints `SAVE <execution> <node> <save#> <sha256|-> <1|0>` (1: save returned
True), flushed per line, after save() returns: a killed child never claims a save that
was not acknowledged. Each node's metadata carries its save number and state hash, so
the verifier can check what is stored without trusting the child's output.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from livingai import (
    CheckpointEngine,
    ExecutionNode,
    NodeType,
    RecoveryEngine,
    SQLiteStore,
    Status,
)

LARGE = 64 * 1024  # states at least this big are compressed off the event loop


def digest(state: bytes) -> str:
    return hashlib.sha256(state).hexdigest()


def make_state(rng: random.Random, large: bool) -> bytes:
    """Half random, half zeros: compressible, but not trivially."""
    size = rng.randint(LARGE, 320 * 1024) if large else rng.randint(0, 16 * 1024)
    return rng.randbytes(size // 2) + bytes(size - size // 2)


class Agent:
    """One execution: PROMPT (state, one in five large), TOOL (RUNNING then SUCCESS, no
    state), MEMORY (small state), repeated; each save prints its line once it returned."""

    def __init__(self, engine: CheckpointEngine, index: int, seed: int) -> None:
        self.engine = engine
        self.index = index
        self.execution_id = f"exec-{index:02d}"
        self.rng = random.Random(seed * 1_000 + index)
        self.number = 0  # saves so far
        self.parent: str | None = None

    def node(self, kind: NodeType, status: Status = Status.SUCCESS) -> ExecutionNode:
        return ExecutionNode(
            execution_id=self.execution_id,
            type=kind,
            id=f"{self.execution_id}-n{self.number:03d}",  # named by its first save
            parent_id=self.parent,
            status=status,
        )

    async def save(self, node: ExecutionNode, state: bytes | None) -> None:
        sha = "-" if state is None else digest(state)
        node.metadata = {"save": self.number, "sha": None if state is None else sha}
        ok = await self.engine.save(node, state=state)
        print(f"SAVE {self.execution_id} {node.id} {self.number} {sha} {int(ok)}", flush=True)
        self.number += 1
        self.parent = node.id

    async def run(self, saves: int) -> None:
        total = self.rng.randint(saves * 3 // 5, saves)
        kinds = (NodeType.PROMPT, NodeType.TOOL, NodeType.MEMORY)
        step = 0
        while self.number < total:
            kind = kinds[step % len(kinds)]
            step += 1
            if kind is NodeType.PROMPT:
                large = self.rng.random() < 0.2
                await self.save(self.node(kind), make_state(self.rng, large))
            elif kind is NodeType.MEMORY:
                await self.save(self.node(kind), make_state(self.rng, large=False))
            else:
                node = self.node(kind, Status.RUNNING)
                await self.save(node, None)
                if self.number < total:
                    node.status = Status.SUCCESS
                    node.output = {"receipt": f"R-{self.index:02d}-{self.number:03d}"}
                    await self.save(node, None)


async def run_agents(args: argparse.Namespace, *, close: bool) -> None:
    engine = CheckpointEngine(
        SQLiteStore(args.db),
        overhead_budget_ms=args.budget_ms,
        max_batch_bytes=args.max_batch_bytes,
    )
    agents = [Agent(engine, i, args.seed) for i in range(args.agents)]
    await asyncio.gather(*(agent.run(args.saves) for agent in agents))
    if close:
        await engine.close()
        print("DONE", flush=True)
        return
    # A last burst of 1 MiB states, compressed off the loop: main() returns while they
    # are queued, and only the interpreter's exit can store them.
    await asyncio.gather(
        *(agent.save(agent.node(NodeType.PROMPT), agent.rng.randbytes(1 << 20)) for agent in agents)
    )
    print(f"BACKLOG {engine.stats().backlog_writes}", flush=True)


@dataclass
class Verdict:
    """What the fresh process found; `problems` must stay empty."""

    problems: list[str] = field(default_factory=list)
    executions: int = 0
    stored_saves: int = 0
    checkpoints: int = 0
    large_checkpoints: int = 0
    acked: int = 0


Ack = tuple[str, str, int, str]  # execution, node, save#, state hash or "-"


async def verify(db: str, acks: list[Ack], *, complete: bool) -> Verdict:
    """Check every acknowledged save, the save order, every stored state, every plan.

    With `complete`, every save listed must be stored and be the last one of its run.
    """
    out = Verdict(acked=len(acks))
    problem = out.problems.append
    versions: dict[str, dict[int, ExecutionNode]] = {}  # execution -> save# -> version
    latest_sha: dict[str, str | None] = {}  # node -> hash of its latest state, as loaded
    async with CheckpointEngine(SQLiteStore(db)) as engine:
        executions = await engine.list_executions()
        out.executions = len(executions)
        for execution_id in executions:
            stored = versions.setdefault(execution_id, {})
            for node in await engine.list_nodes(execution_id):
                for version in await engine.history(node.id):
                    stored[version.metadata["save"]] = version
                loaded = await engine.load(node.id)  # raises if a blob is torn or corrupt
                assert loaded is not None
                sha = None if loaded.state is None else digest(loaded.state)
                latest_sha[node.id] = sha
                if sha != loaded.node.metadata["sha"]:
                    problem(f"{node.id}: state hash {sha} != saved {loaded.node.metadata['sha']}")
                if loaded.state is not None:
                    out.checkpoints += 1
                    out.large_checkpoints += len(loaded.state) >= LARGE
            out.stored_saves += len(stored)
            if sorted(stored) != list(range(len(stored))):
                problem(f"{execution_id}: stored saves are not a prefix: {sorted(stored)}")

        for execution_id, node_id, number, sha in acks:
            found = versions.get(execution_id, {}).get(number)
            if found is None or found.id != node_id:
                problem(f"acknowledged save {number} of {node_id} is not stored")
            elif sha != "-" and latest_sha.get(node_id) != sha:
                problem(f"acknowledged state of {node_id} is not the one stored")
        if complete:
            last = {execution_id: number for execution_id, _, number, _ in acks}
            for execution_id, number in last.items():
                if max(versions.get(execution_id, {}), default=-1) != number:
                    problem(f"{execution_id}: last save {number} is not the last stored")

        recovery = RecoveryEngine(engine)
        for execution_id in sorted({ack[0] for ack in acks}):
            await check_plan(recovery, execution_id, versions.get(execution_id, {}), problem)
    return out


async def check_plan(
    recovery: RecoveryEngine,
    execution_id: str,
    stored: dict[int, ExecutionNode],
    problem: Callable[[str], None],
) -> None:
    """The plan resumes from the last stored checkpoint; what follows is replay or skip."""
    try:
        plan = await recovery.plan(execution_id)
    except Exception as exc:
        problem(f"{execution_id}: plan failed: {exc!r}")
        return
    with_state = [n for n in sorted(stored) if stored[n].metadata["sha"] is not None]
    if not with_state or plan.resume_node is None or plan.state is None:
        problem(f"{execution_id}: no resume point (stored checkpoints: {with_state})")
        return
    resume = stored[with_state[-1]]
    if plan.resume_node_id != resume.id:
        problem(f"{execution_id}: resumes at {plan.resume_node_id}, not {resume.id}")
    if digest(plan.state) != resume.metadata["sha"]:
        problem(f"{execution_id}: the resume state is not the one saved")
    first_save: dict[str, int] = {}  # node -> its first save number
    last: dict[str, ExecutionNode] = {}  # node -> its last stored version
    for number in sorted(stored, reverse=True):
        first_save[stored[number].id] = number
        last.setdefault(stored[number].id, stored[number])
    after = {node for node, number in first_save.items() if number > with_state[-1]}
    replay = {node.id for node in plan.replay_nodes}
    skipped = {node.id for node in plan.skipped_nodes}
    doubt = {node.id for node in plan.in_doubt_nodes}
    tools = {node for node in after if stored[first_save[node]].type is NodeType.TOOL}
    # A tool stopped between its intent (RUNNING) and its outcome (killed there, or the
    # agent's last step) is in doubt, wherever it is in the log; not replayed nor skipped.
    started = {
        node
        for node, version in last.items()
        if version.type is NodeType.TOOL and version.status is Status.RUNNING
    }
    if replay | skipped != after - started or skipped != tools - started or doubt != started:
        problem(
            f"{execution_id}: replay {replay} / skip {skipped} / in doubt {doubt}; "
            f"steps after: {after}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("run", "exit", "verify"))
    parser.add_argument("--db", required=True)
    parser.add_argument("--agents", type=int, default=40)
    parser.add_argument("--saves", type=int, default=50, help="at most, per agent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-ms", type=float, default=50.0)
    parser.add_argument("--max-batch-bytes", type=int, default=64 << 20)
    parser.add_argument(
        "--loop",
        choices=("asyncio.run", "unclosed"),
        default="asyncio.run",
        help="exit: asyncio.run(), or run_until_complete() on a loop never closed",
    )
    parser.add_argument("--acks", help="verify: file of SAVE lines to check")
    parser.add_argument("--complete", action="store_true", help="verify: nothing was lost")
    args = parser.parse_args()
    if args.mode == "verify":
        with open(args.acks) as lines:
            acks = [(e, n, int(k), sha) for _, e, n, k, sha, _ in map(str.split, lines)]
        verdict = asyncio.run(verify(args.db, acks, complete=args.complete))
        json.dump(verdict.__dict__, sys.stdout)
    elif args.mode == "exit" and args.loop == "unclosed":  # the atexit hook must flush
        asyncio.new_event_loop().run_until_complete(run_agents(args, close=False))
    else:
        asyncio.run(run_agents(args, close=args.mode == "run"))


if __name__ == "__main__":
    main()
