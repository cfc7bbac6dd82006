"""The process of tests/test_sigterm_backlog.py: agents save big incompressible states
to SQLite as fast as they can until the test sends SIGTERM.

Run as `python -m tests.sigterm_child --db F --saves-log F --log F ...`. Every save()
that returns appends `SAVE <node> <1|0>` to the saves log (1: it returned True), every
refused one `REFUSED <node>` and every one that raised `RAISED <node> <error>`, flushed
per line after save() returned: a process killed by the signal never claims a save that
did not return. The library's log goes to `--log`. Stdout says `READY` once
`--ready-after` saves returned False (or, with `--saves`, once every agent made its
saves): the test's cue to send SIGTERM. With `--reject-every N` the store refuses for
good every node whose number is a multiple of N; with `--return`, main returns once the
agents made their `--saves` (asyncio.run then cancels what still runs, the SIGTERM
flush too) instead of waiting for the signal.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TextIO

from livingai import (
    BacklogFullError,
    CheckpointEngine,
    ExecutionNode,
    NodeRecord,
    NodeType,
    RecordRejectedError,
    SQLiteStore,
    StoreError,
)


class RejectingStore(SQLiteStore):
    """SQLite that refuses for good the nodes `agent-XX-NNNNN` with NNNNN % every == 0."""

    def __init__(self, path: str, every: int) -> None:
        super().__init__(path)
        self.every = every

    async def append(
        self, records: Sequence[NodeRecord], *, fences: Mapping[str, int] | None = None
    ) -> None:
        for record in records:
            if int(record.node_id.rsplit("-", 1)[1]) % self.every == 0:
                raise RecordRejectedError(f"node {record.node_id} is refused by this test")
        await super().append(records, fences=fences)


class Agents:
    """Agents that share one engine and one saves log."""

    def __init__(self, engine: CheckpointEngine, out: TextIO, args: argparse.Namespace) -> None:
        self.engine = engine
        self.out = out
        self.args = args
        self.late = 0  # saves that returned False

    def note(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    async def run(self, index: int) -> None:
        number = 0
        while not self.args.saves or number < self.args.saves:
            node = ExecutionNode(
                execution_id=f"exec-{index:02d}",
                type=NodeType.PROMPT,
                id=f"agent-{index:02d}-{number:05d}",
            )
            number += 1
            try:
                ok = await self.engine.save(node, state=os.urandom(self.args.state_bytes))
            except BacklogFullError:
                self.note(f"REFUSED {node.id}")
                continue
            except StoreError as exc:  # rejected, or given up: its save says so
                self.note(f"RAISED {node.id} {type(exc).__name__}")
                continue
            self.note(f"SAVE {node.id} {int(ok)}")
            if not ok:
                self.late += 1
                if self.late == self.args.ready_after:
                    print("READY", flush=True)


async def main(args: argparse.Namespace, out: TextIO) -> None:
    store = (
        RejectingStore(args.db, args.reject_every) if args.reject_every else SQLiteStore(args.db)
    )
    engine = CheckpointEngine(
        store,
        max_backlog_bytes=args.max_backlog_bytes,
        exit_flush_seconds=args.exit_flush_seconds,
        overhead_budget_ms=args.budget_ms,
    )
    agents = Agents(engine, out, args)
    await asyncio.gather(*(agents.run(i) for i in range(args.agents)))
    if args.return_:
        return  # as an application whose work is done, the engine left open
    print(f"READY {engine.stats().backlog_writes}", flush=True)
    await asyncio.get_running_loop().create_future()  # until the signal ends us


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--saves-log", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--state-bytes", type=int, default=2 << 20)
    parser.add_argument("--saves", type=int, default=0, help="per agent; 0: until the signal")
    parser.add_argument("--ready-after", type=int, default=0, help="saves returned False")
    parser.add_argument("--max-backlog-bytes", type=int, default=2048 << 20)
    parser.add_argument("--exit-flush-seconds", type=float, default=10.0)
    parser.add_argument("--budget-ms", type=float, default=50.0)
    parser.add_argument("--reject-every", type=int, default=0)
    parser.add_argument("--return", dest="return_", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    logging.basicConfig(
        filename=arguments.log,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    with open(arguments.saves_log, "a") as saves_log:
        asyncio.run(main(arguments, saves_log))
