"""What the tests need of the machine, written once: the server URLs, whether a server
answers, skipping (or, under LIVINGAI_REQUIRE_SERVICES=1, failing) without one, spare
ports, unique names, and running writer processes side by side.

Server URLs come from the environment, with loopback defaults:

    LIVINGAI_TEST_REDIS_URL      redis://127.0.0.1:6379/0
    LIVINGAI_TEST_POSTGRES_DSN   postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

REDIS_URL = os.environ.get("LIVINGAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get(
    "LIVINGAI_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("LIVINGAI_REQUIRE_SERVICES") == "1"
ROOT = Path(__file__).resolve().parent.parent


def reachable(url: str, default_port: int) -> bool:
    """True when something accepts a TCP connection at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def skip_or_fail(reason: str) -> NoReturn:
    """Skip, saying why; under LIVINGAI_REQUIRE_SERVICES=1 (CI) fail instead."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (LIVINGAI_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


def need_server(name: str, url: str, default_port: int) -> None:
    if not reachable(url, default_port):
        skip_or_fail(f"{name} is not reachable at {url}; start it or set the URL variable")


def free_port() -> int:
    """A loopback TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def child(module: str, *args: str) -> subprocess.Popen[str]:
    """`python -m module *args` from the repository root, its output piped as text: a
    crash test's child process, which the test reads and kills."""
    command = [sys.executable, "-m", module, *args]
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_processes(commands: Sequence[Sequence[str]], timeout: float) -> list[tuple[str, str]]:
    """Run the commands side by side (from the repository root) and return each one's
    standard output and error; fails naming the error output of any that did not exit 0
    or printed a traceback. Every process is gone when this returns."""
    processes = [
        subprocess.Popen(
            list(command),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    outputs = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            assert process.returncode == 0, err
            assert "Traceback" not in err, err
            outputs.append((out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs


async def until(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    """Poll `condition` on the loop until it holds; fail naming `what` after `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.005)
