"""Crash tests: what a save promised must be on disk after the process dies.

A child process saves checkpoints to SQLite and is killed with SIGKILL mid-run, or
returns from its event loop without close(); a fresh process then opens the file and
checks every acknowledged save, the save order, every stored state and every recovery
plan (tests/crash_child.py). The parent reads the child's stdout to know when to kill:
no sleeps, and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

CHILD = Path(__file__).with_name("crash_child.py")
AGENTS = 40
SAVES = 50  # at most, per agent: a full run makes about 1600 saves
KILL_AFTER = 500  # acknowledged saves before the SIGKILL
MAX_LINES = AGENTS * SAVES + 100  # more than a full run prints
SECONDS = 60.0  # bound on every child process


def child(mode: str, *args: str) -> list[str]:
    return [sys.executable, str(CHILD), mode, *args]


def acknowledged(line: str) -> bool:
    """A SAVE line whose save() returned True."""
    return line.startswith("SAVE ") and line.rstrip("\n").endswith(" 1")


def verify(db: Path, saves: list[str], tmp_path: Path, *, complete: bool = False) -> Any:
    """Check the saves in a fresh process; return its verdict, whose problems are none."""
    listed = tmp_path / "saves.txt"
    listed.write_text("".join(saves))
    command = child("verify", "--db", str(db), "--acks", str(listed))
    done = subprocess.run(
        [*command, *(["--complete"] if complete else [])],
        capture_output=True,
        text=True,
        timeout=SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    verdict = json.loads(done.stdout)
    assert verdict["problems"] == []
    assert verdict["acked"] == len(saves)
    return verdict


@pytest.mark.crash
def test_sigkill_mid_run_loses_no_acknowledged_save(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    command = child("run", "--db", str(db), "--agents", str(AGENTS), "--saves", str(SAVES))
    lines: list[str] = []
    with (
        (tmp_path / "child.err").open("w") as err,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True) as proc,
    ):
        assert proc.stdout is not None
        watchdog = threading.Timer(SECONDS, proc.kill)  # a hung child cannot hang the test
        watchdog.start()
        try:
            acks = 0
            while acks < KILL_AFTER and len(lines) < MAX_LINES:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
                acks += acknowledged(line)
            os.kill(proc.pid, signal.SIGKILL)
            lines += proc.stdout.readlines()  # printed before it died: acknowledged too
            proc.wait(SECONDS)
        finally:
            watchdog.cancel()
    stderr = (tmp_path / "child.err").read_text()
    assert proc.returncode == -signal.SIGKILL, stderr
    assert acks == KILL_AFTER, f"the child stopped before the kill: {stderr}"
    assert "DONE\n" not in lines  # killed mid-run, not after its last save
    acked = [line for line in lines if acknowledged(line)]
    verdict = verify(db, acked, tmp_path)
    assert verdict["executions"] >= len({line.split()[1] for line in acked})
    assert verdict["stored_saves"] >= len(acked)
    assert verdict["large_checkpoints"] > 0  # compressed off the loop, then killed


def exit_without_close(tmp_path: Path, *options: str) -> None:
    """The child's main() returns with writes queued; a fresh process finds every save."""
    db = tmp_path / "exit.db"
    done = subprocess.run(
        # A tiny budget: nearly every save returns False and is still queued.
        child("exit", "--db", str(db), "--agents", "8", "--saves", "20", "--budget-ms", "0.001")
        + list(options),
        capture_output=True,
        text=True,
        timeout=SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing abandoned, nothing logged
    *lines, last = done.stdout.splitlines(keepends=True)
    assert last.startswith("BACKLOG ")
    assert int(last.split()[1]) > 0  # main() returned with writes still queued
    saves = [line for line in lines if line.startswith("SAVE ")]
    assert any(not acknowledged(line) for line in saves)
    verdict = verify(db, saves, tmp_path, complete=True)
    assert verdict["stored_saves"] == len(saves)


@pytest.mark.crash
def test_exit_without_close_stores_every_save(tmp_path: Path) -> None:
    exit_without_close(tmp_path)  # asyncio.run() cancels the writer, which flushes


@pytest.mark.crash
def test_exit_on_a_loop_left_open_stores_every_save(tmp_path: Path) -> None:
    # Several batches queued at exit; the loop is never closed, so the atexit hook flushes.
    exit_without_close(tmp_path, "--loop", "unclosed", "--max-batch-bytes", "1")
