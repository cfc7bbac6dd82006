"""SIGTERM with a deep backlog (issue 15, item 3): every save that returned ends stored, or
counted as abandoned and logged at ERROR with its node id, whatever the flush meets on
the way (a timeout, rejected records, the loop ending under it); and the same on the
close and exit paths. The process is tests/sigterm_child.py: twenty agents saving 2 MiB
states of random bytes (incompressible) to SQLite as fast as they can."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from livingai import (
    CheckpointEngine,
    ClosedError,
    ExecutionNode,
    MemoryStore,
    NodeRecord,
    NodeType,
    SQLiteStore,
)
from livingai._core.commits import CommitQueue, Write
from livingai._core.store import Fences
from tests.services import ROOT

STATE_BYTES = 2 << 20
NODE = re.compile(r"agent-\d\d-\d{5}")


@dataclass
class Ending:
    """What a child left behind once SIGTERM ended it."""

    code: int
    returned: dict[str, bool]  # node id -> what its save() returned
    stored: set[str]  # of those, the ones the store holds with their whole state
    named: set[str]  # node ids named in ERROR lines of the library's log
    log: str

    def unaccounted(self) -> list[str]:
        """Saves that returned and are neither stored nor named at ERROR: lost silently."""
        return sorted(n for n in self.returned if n not in self.stored and n not in self.named)

    def acknowledged_lost(self) -> list[str]:
        return sorted(n for n, ok in self.returned.items() if ok and n not in self.stored)

    def given_up(self) -> int:
        """Saves that returned False and were not stored (the flush could not finish)."""
        return sum(1 for n, ok in self.returned.items() if not ok and n not in self.stored)


async def _stored(path: Path, node_ids: Sequence[str]) -> set[str]:
    async with SQLiteStore(str(path)) as store:
        found = set()
        for node_id in node_ids:
            record = await store.read(node_id)
            if record is not None and len(record.checkpoint or b"") >= STATE_BYTES:
                found.add(node_id)
        return found


def _sigterm_child(tmp_path: Path, options: str) -> Ending:
    """Run the child with `options` (and a backlog of at most 600 MiB), SIGTERM it once it
    says READY, and read what it left."""
    db, saves, log = tmp_path / "agents.db", tmp_path / "saves.log", tmp_path / "livingai.log"
    command = [sys.executable, "-m", "tests.sigterm_child", "--db", str(db)]
    command += ["--saves-log", str(saves), "--log", str(log), *options.split()]
    command += ["--max-backlog-bytes", str(600 << 20)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env) as child:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("READY"), (line, log.read_text() if log.exists() else "")
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=30)
    returned = {}
    for entry in saves.read_text().splitlines():
        kind, node_id, *rest = entry.split()
        if kind == "SAVE":
            returned[node_id] = rest == ["1"]
    text = log.read_text()
    errors = "\n".join(line for line in text.splitlines() if " ERROR " in line)
    stored = asyncio.run(_stored(db, list(returned)))
    return Ending(code, returned, stored, set(NODE.findall(errors)), text)


def _assert_nothing_lost_silently(ending: Ending) -> None:
    assert ending.code == -signal.SIGTERM  # the process ended as SIGTERM has it
    assert "SIGTERM: storing the queued writes" in ending.log
    assert ending.acknowledged_lost() == []
    lost = ending.unaccounted()
    assert lost == [], f"{len(lost)} saves returned False, were not stored, named nowhere"


def test_sigterm_with_a_deep_backlog_names_every_save_it_could_not_store(
    tmp_path: Path,
) -> None:
    ending = _sigterm_child(tmp_path, "--ready-after 120 --exit-flush-seconds 2")
    assert ending.given_up() > 20  # a backlog the flush could not store within its bound
    _assert_nothing_lost_silently(ending)
    assert "NOT stored: exit_flush_seconds (2.0s) ran out after SIGTERM" in ending.log


def test_sigterm_flush_that_meets_rejected_records_still_names_the_rest(
    tmp_path: Path,
) -> None:
    ending = _sigterm_child(tmp_path, "--ready-after 120 --exit-flush-seconds 2 --reject-every 3")
    assert "REJECTED by the store" in ending.log
    assert ending.given_up() > 20
    _assert_nothing_lost_silently(ending)


def test_sigterm_flush_cancelled_as_the_loop_ends_names_what_it_left(tmp_path: Path) -> None:
    # The agents make their last saves during the flush and main returns: asyncio.run
    # cancels every task left, the SIGTERM flush among them.
    ending = _sigterm_child(
        tmp_path, "--ready-after 100 --saves 14 --return --exit-flush-seconds 30"
    )
    assert ending.given_up() > 20
    _assert_nothing_lost_silently(ending)
    assert "NOT stored: the SIGTERM flush was cut short: CancelledError()" in ending.log


# -- the same holes, in process ---------------------------------------------------------------


def _node(number: int) -> ExecutionNode:
    return ExecutionNode(execution_id="x", type=NodeType.PROMPT, id=f"agent-00-{number:05d}")


async def test_abandon_names_every_node_however_many(caplog: pytest.LogCaptureFixture) -> None:
    never = asyncio.Event()

    async def write_batch(records: list[NodeRecord], fences: Fences | None) -> None:
        await never.wait()

    queue = CommitQueue(
        "q",
        write_batch,
        what="store write",
        lost="queued writes were NOT stored",
        max_batch_bytes=1,
        retry_max_delay_seconds=1.0,
        exit_flush_seconds=1.0,
    )
    for number in range(1234):
        queue.put(Write(NodeRecord.from_node(_node(number))))
    with caplog.at_level(logging.ERROR, logger="livingai"):
        queue.abandon("the test gave up")
    await queue.stop()
    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert "1234 queued writes were NOT stored: the test gave up" in text
    assert set(NODE.findall(text)) == {f"agent-00-{n:05d}" for n in range(1234)}
    assert max(len(r.getMessage()) for r in caplog.records) < 4000  # lines a log keeps whole
    assert queue.abandoned == 1234


async def test_a_write_given_up_while_being_written_does_not_break_the_queue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writing, go = asyncio.Event(), asyncio.Event()
    written: list[str] = []

    async def write_batch(records: list[NodeRecord], fences: Fences | None) -> None:
        writing.set()
        await go.wait()
        written.extend(r.node_id for r in records)

    queue = CommitQueue(
        "q",
        write_batch,
        what="store write",
        lost="queued writes were NOT stored",
        max_batch_bytes=1 << 20,
        retry_max_delay_seconds=1.0,
        exit_flush_seconds=1.0,
    )
    queue.put(Write(NodeRecord.from_node(_node(1))))
    await writing.wait()
    with caplog.at_level(logging.WARNING, logger="livingai"):
        queue.abandon("the test gave up")
        go.set()
        queue.put(Write(NodeRecord.from_node(_node(2))))
        async with asyncio.timeout(10):  # a bound, should the task have died
            await queue.flush()  # it lived on: the next write lands
    assert written == ["agent-00-00001", "agent-00-00002"]
    assert (queue.abandoned, queue.committed, len(queue)) == (1, 1, 0)
    assert "1 queued writes were NOT stored: the test gave up" in caplog.text
    assert "1 of them, the oldest, in a store call that had not answered" in caplog.text
    assert "given up while being written and were stored after all" in caplog.text
    await queue.stop()


class _OneAppend(MemoryStore):
    """Takes one append, once `gate` is set; any later one waits for ever."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.appends = 0
        self.stored: list[str] = []

    async def append(self, records: Sequence[NodeRecord], *, fences: Fences | None = None) -> None:
        self.appends += 1
        await self.gate.wait()
        if self.appends > 1:
            await asyncio.Event().wait()
        await super().append(records, fences=fences)
        self.stored.extend(r.node_id for r in records)


async def test_a_save_waiting_for_room_as_close_begins_is_refused_or_accounted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _OneAppend()
    engine = CheckpointEngine(
        store,
        max_backlog_bytes=1500,
        overhead_budget_ms=200,
        exit_flush_seconds=0.2,
        handle_sigterm=False,
    )
    first = asyncio.create_task(engine.save(_node(1), state=b"a" * 1000))
    waiting = asyncio.create_task(engine.save(_node(2), state=b"b" * 1000))  # no room yet
    closing = asyncio.create_task(engine.close())
    asyncio.get_running_loop().call_soon(store.gate.set)  # after both tasks began
    with caplog.at_level(logging.ERROR, logger="livingai"):
        await closing
        outcome = (await asyncio.gather(first, waiting, return_exceptions=True))[1]
    stored = "agent-00-00002" in store.stored
    named = "agent-00-00002" in caplog.text
    assert isinstance(outcome, ClosedError) or stored or named, outcome


_CLOSE_CUT_SHORT = textwrap.dedent(
    """
    import asyncio
    from livingai import CheckpointEngine, ExecutionNode, MemoryStore, NodeType

    class Never(MemoryStore):  # a store that never answers
        async def append(self, records, *, fences=None):
            await asyncio.get_running_loop().create_future()

    def interrupt():
        raise KeyboardInterrupt  # Ctrl-C on a loop run by hand: the loop stops there

    loop = asyncio.new_event_loop()
    engine = CheckpointEngine(Never(), overhead_budget_ms=1, exit_flush_seconds=0.2)
    node = ExecutionNode(execution_id="x", type=NodeType.PROMPT, id="agent-00-00007")
    print("returned", loop.run_until_complete(engine.save(node)), flush=True)

    async def close_cut_short():
        loop.call_soon(loop.call_soon, interrupt)  # once close() has begun
        await engine.close()

    try:
        loop.run_until_complete(close_cut_short())
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    """
)


def test_writes_left_by_a_close_cut_short_are_named_at_exit() -> None:
    # close() began (the queue is closed) and never finished; the interpreter exits with
    # the loop left open, and the atexit hook must not pass that queue by.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", _CLOSE_CUT_SHORT],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.stdout.split() == ["returned", "False", "interrupted"], done.stderr
    assert "1 queued writes were NOT stored" in done.stderr
    assert "nodes: agent-00-00007" in done.stderr
