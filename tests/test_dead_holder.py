"""A killed run resumes at once: a lease held by a default worker id whose process on this
machine is gone is taken over without waiting for it to expire; a live holder, another
host, another boot and ids given by hand keep it. holder_is_gone is read against real
processes; then, on every store, tests/dead_holder_child.py is SIGKILLed inside a run
with a 60 s lease and started again."""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from livingai import CheckpointEngine, MemoryStore, Runtime, open_store
from livingai._runtime.workers import default_worker_id, holder_is_gone
from tests.dead_holder_child import EXECUTION, LEASE_SECONDS
from tests.services import ROOT
from tests.store_urls import fresh_store_url

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="needs Linux's /proc to tell a process is gone"
)

SECONDS = 20.0  # any one child process, start to end
DEFAULT_ID = re.compile(r"(?P<host>.+):(?P<pid>[0-9]+)@(?P<boot>[0-9a-f]{12})\.(?P<start>[0-9]+)")
STORES = ["sqlite", "redis", "postgres", "tiered"]


def _parts(worker_id: str) -> dict[str, str]:
    found = DEFAULT_ID.fullmatch(worker_id)
    assert found is not None, worker_id
    return found.groupdict()


def _id(parts: dict[str, str], **changed: object) -> str:
    merged = {**parts, **{key: str(value) for key, value in changed.items()}}
    return "{host}:{pid}@{boot}.{start}".format(**merged)


@pytest.fixture
def other() -> Iterator[subprocess.Popen[str]]:
    """Another Python process that prints its default worker id, then waits for stdin."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from livingai._runtime.workers import default_worker_id; "
            "print(default_worker_id(), flush=True); sys.stdin.read()",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield child
    finally:
        child.kill()
        child.communicate(timeout=SECONDS)


# -- holder_is_gone ---------------------------------------------------------------------


async def test_the_default_id_names_this_host_process_boot_and_start() -> None:
    parts = _parts(default_worker_id())
    assert (parts["host"], int(parts["pid"])) == (socket.gethostname(), os.getpid())
    assert default_worker_id() == default_worker_id()
    async with Runtime(CheckpointEngine(MemoryStore())) as runtime:
        assert runtime.worker_id == default_worker_id()
    async with Runtime(CheckpointEngine(MemoryStore()), worker_id="worker-1") as runtime:
        assert runtime.worker_id == "worker-1"


def test_this_process_is_not_gone() -> None:
    assert holder_is_gone(default_worker_id()) is False


def test_a_live_process_is_not_gone_and_a_killed_one_is(other: subprocess.Popen[str]) -> None:
    assert other.stdout is not None
    holder = other.stdout.readline().strip()
    assert _parts(holder)["pid"] == str(other.pid)
    assert holder_is_gone(holder) is False
    other.kill()
    os.waitid(os.P_PID, other.pid, os.WEXITED | os.WNOWAIT)  # dead, left unreaped
    assert holder_is_gone(holder) is True  # a zombie never runs again
    other.wait(timeout=SECONDS)
    assert holder_is_gone(holder) is True  # reaped: the pid exists no more


def test_this_pid_with_another_start_time_is_gone() -> None:
    parts = _parts(default_worker_id())
    assert holder_is_gone(_id(parts, start=int(parts["start"]) + 1)) is True


def test_another_host_or_boot_or_an_id_given_by_hand_is_never_gone(
    other: subprocess.Popen[str],
) -> None:
    assert other.stdout is not None
    holder = other.stdout.readline().strip()
    other.kill()
    other.wait(timeout=SECONDS)
    parts = _parts(holder)
    assert holder_is_gone(holder) is True
    boot = "0" * 12 if parts["boot"] != "0" * 12 else "1" * 12
    assert holder_is_gone(_id(parts, host=f"not-{parts['host']}")) is False
    assert holder_is_gone(_id(parts, boot=boot)) is False
    for given in ("worker-1", f"{parts['host']}:{parts['pid']}", holder + "x", ""):
        assert holder_is_gone(given) is False, given
    assert holder_is_gone(_id(parts, pid=0)) is False  # never the process group


# -- a killed program started again -------------------------------------------------------


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_store_url(str(request.param), tmp_path, "livingai_dead") as url:
        yield url


def _start(url: str, marks: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.dead_holder_child", url, str(marks), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_line(child: subprocess.Popen[str]) -> str:
    """The child's first line of output, within SECONDS."""
    assert child.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        if not selector.select(SECONDS):
            raise AssertionError(f"no output from the child in {SECONDS}s")
    line = child.stdout.readline()
    assert line, f"the child exited: {child.communicate(timeout=SECONDS)[1]}"
    return line.strip()


def _finish(url: str, marks: Path) -> tuple[dict[str, Any], str]:
    """Run the program to its end: its JSON line and its error output."""
    child = _start(url, marks, "finish")
    out, err = child.communicate(timeout=SECONDS)
    assert child.returncode == 0, err
    return json.loads(out), err


def _marks(marks: Path) -> list[str]:
    return marks.read_text(encoding="utf-8").splitlines()


async def _pending(url: str) -> list[str]:
    async with Runtime(CheckpointEngine(open_store(url)), worker_id="onlooker") as runtime:
        return [found.execution_id for found in await runtime.pending()]


@pytest.mark.crash
@pytest.mark.timeout(6 * SECONDS)
def test_a_killed_run_is_taken_over_at_once_and_a_live_one_is_not(
    store_url: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    killed = _start(store_url, marks, "block")
    try:
        line = _first_line(killed)
        assert line.startswith("blocked "), line
        holder = line.removeprefix("blocked ")
        assert _parts(holder)["pid"] == str(killed.pid)
        # While it lives, the run is its own: another process of the same program waits.
        assert _finish(store_url, marks)[0] == {"held": holder}
        assert asyncio.run(_pending(store_url)) == []
    finally:
        os.kill(killed.pid, signal.SIGKILL)  # mid-run: a real kill -9
        killed.communicate(timeout=SECONDS)
    assert killed.returncode == -signal.SIGKILL
    assert _marks(marks) == [f"first {killed.pid}", f"second {killed.pid}"]

    # Its lease has about a minute to go; the process holding it is gone.
    assert asyncio.run(_pending(store_url)) == [EXECUTION]
    started = time.monotonic()
    line_of, err = _finish(store_url, marks)
    took = time.monotonic() - started
    assert "held" not in line_of, f"the dead holder's lease was not taken over: {line_of}"
    resumed = int(_parts(line_of["worker"])["pid"])
    # resumed, not restarted: the tool that completed before the kill is not run again
    assert line_of["result"] == {"first": killed.pid, "second": resumed}
    assert _marks(marks) == [f"first {killed.pid}", f"second {killed.pid}", f"second {resumed}"]
    assert took < LEASE_SECONDS / 3, took
    assert f"worker {holder!r}" in err, err
    assert "taking its lease over" in err, err
    assert asyncio.run(_pending(store_url)) == []
