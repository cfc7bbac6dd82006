"""Redis for the tests: stores over a throwaway key prefix, a private redis-server that a
test may kill and restart, a layout checker, and agents that save and verify.

Run as `python -m tests.redis_support agents URL PREFIX NAME AGENTS SAVES` it is one of
the processes of test_redis's many-processes test: it saves, then prints its stats as
JSON on one line.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from livingai import (
    CheckpointEngine,
    CheckpointStore,
    ExecutionNode,
    NodeType,
    RedisStore,
    Status,
)
from livingai._stores.redis_keys import scan_pattern, unpack
from tests.services import free_port

SERVER_START_SECONDS = 20.0


def redis_factory(url: str, prefix: str) -> Iterator[Callable[[], CheckpointStore]]:
    """Stores over one key prefix; every key under it is deleted afterwards."""
    try:
        yield lambda: RedisStore(url, prefix=prefix)
    finally:
        delete_prefix(url, prefix)


def sync_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


def prefix_keys(url: str, prefix: str) -> list[bytes]:
    client = sync_client(url)
    try:
        return list(client.scan_iter(match=scan_pattern(prefix), count=1000))
    finally:
        client.close()


def delete_prefix(url: str, prefix: str) -> int:
    """UNLINK every key under `prefix`; how many there were."""
    client = sync_client(url)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=scan_pattern(prefix), count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
        return deleted
    finally:
        client.close()


# -- a private redis-server --------------------------------------------------------------


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """A redis-server of our own on a spare loopback port, with its data in `directory`.

    With `appendonly` (the default) every write is fsynced to the append-only file before
    it is acknowledged (appendfsync always), so a SIGKILL loses no acknowledged write and
    a restart on the same directory finds them all. Not started until start().
    """

    def __init__(
        self, directory: Path, *, appendonly: bool = True, options: tuple[str, ...] = ()
    ) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.options = options  # more redis-server options, as "--name", "value", ...
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def command(self) -> list[str]:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--dir", str(self.directory), "--logfile", str(self.log)]
        if self.appendonly:
            command += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            command += ["--appendonly", "no"]
        return [*command, *self.options]

    def start(self) -> None:
        """Start it (again, on the same port and directory) and wait until it answers."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start: {self.log_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer PING: {self.log_text()}")
            time.sleep(0.01)  # polling for readiness, bounded by the deadline

    def answers(self) -> bool:
        client = redis.Redis(
            port=self.port,
            socket_timeout=1,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),  # one try: the caller polls
        )
        try:
            return bool(client.ping())
        except redis.AuthenticationError:  # up, and wants a password (--requirepass)
            return True
        except redis.RedisError:  # refused, or still LOADING the append-only file
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(SERVER_START_SECONDS)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(SERVER_START_SECONDS)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else "(no log)"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- the layout's invariants -------------------------------------------------------------


def check_layout(url: str, prefix: str) -> list[str]:
    """Every broken invariant of the key layout under `prefix` (none when it is sound)."""
    client: Any = sync_client(url)  # replies are bytes: decode_responses is off
    p = prefix
    problems: list[str] = []
    try:
        executions = [x.decode() for x in client.zrange(f"{p}:executions", 0, -1)]
        total = 0
        for x in executions:
            records: dict[bytes, bytes] = client.hgetall(f"{p}:xr:{x}")
            versions = client.zrange(f"{p}:xv:{x}", 0, -1)
            nodes = client.zrange(f"{p}:xn:{x}", 0, -1)
            latest: dict[bytes, bytes] = client.hgetall(f"{p}:xl:{x}")
            total += len(records)
            if set(records) != set(versions) or len(versions) != len(records):
                problems.append(f"{x}: versions index and records differ")
            if set(nodes) != set(latest):
                problems.append(f"{x}: node index and latest versions differ")
            if not set(latest.values()) <= set(records):
                problems.append(f"{x}: a latest version is not stored")
            checkpoint = client.get(f"{p}:xc:{x}")
            if checkpoint is not None and checkpoint not in records:
                problems.append(f"{x}: the latest checkpoint is not stored")
            blobs: dict[bytes, bytes] = client.hgetall(f"{p}:xb:{x}")
            if not set(blobs) <= set(records):
                problems.append(f"{x}: a checkpoint belongs to no stored version")
            for version_id, data in records.items():
                record = unpack(data, blobs.get(version_id))  # raises if a blob is missing
                if record.version_id != version_id.decode() or record.execution_id != x:
                    problems.append(f"{x}: record {version_id!r} is filed under the wrong key")
        entries = 0
        for key in client.scan_iter(match=scan_pattern(f"{p}:n"), count=1000):
            listed = client.lrange(key, 0, -1)
            entries += len(listed)
            if len(set(listed)) != len(listed):
                problems.append(f"{key!r}: a version is listed twice")
        if entries != total:
            problems.append(f"node lists hold {entries} entries for {total} versions")
        seq = client.get(f"{p}:seq")
        if total and (seq is None or int(seq) < total):
            problems.append(f"the counter ({seq!r}) is behind the {total} versions")
    finally:
        client.close()
    return problems


# -- agents ------------------------------------------------------------------------------

Saved = dict[str, dict[str, int]]  # execution id -> node id -> versions saved, in order


async def run_agent(
    engine: CheckpointEngine,
    execution_id: str,
    steps: int,
    saved: Saved,
    after_save: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Save `steps` nodes: every third a TOOL saved twice (RUNNING, then SUCCESS), the
    rest once, every other one with a state. Records what it saved in `saved`."""
    mine = saved.setdefault(execution_id, {})
    parent: str | None = None
    for step in range(steps):
        tool = step % 3 == 2
        node = ExecutionNode(
            execution_id=execution_id,
            type=NodeType.TOOL if tool else NodeType.PROMPT,
            id=f"{execution_id}/step-{step:03d}",
            parent_id=parent,
            status=Status.RUNNING if tool else Status.SUCCESS,
            output={"step": step},
        )
        for _ in range(2 if tool else 1):
            state = f"{execution_id} state {step}".encode() * 20 if step % 2 == 0 else None
            await engine.save(node, state=state)
            mine[node.id] = mine.get(node.id, 0) + 1
            if after_save is not None:
                await after_save()
            node.status = Status.SUCCESS
        parent = node.id


async def verify_saved(store: CheckpointStore, saved: Saved) -> list[str]:
    """Every save is stored exactly once, nodes in first-seen order: the broken promises."""
    problems: list[str] = []
    stored = set(await store.list_executions())
    for execution_id, nodes in saved.items():
        if execution_id not in stored:
            problems.append(f"{execution_id} is not listed")
        listed = [record.node_id for record in await store.list_nodes(execution_id)]
        if listed != list(nodes):
            problems.append(f"{execution_id}: nodes {listed} instead of {list(nodes)}")
        versions = await store.list_versions(execution_id)
        ids = [record.version_id for record in versions]
        if len(ids) != len(set(ids)) or len(ids) != sum(nodes.values()):
            problems.append(f"{execution_id}: {len(ids)} versions for {sum(nodes.values())} saves")
        for node_id, count in nodes.items():
            history = await store.history(node_id)
            if len(history) != count:
                problems.append(f"{node_id}: {len(history)} versions stored, {count} saved")
    return problems


async def _agents_process(url: str, prefix: str, name: str, agents: int, steps: int) -> None:
    saved: Saved = {}
    engine = CheckpointEngine(RedisStore(url, prefix=prefix), retry_max_delay_seconds=0.1)
    async with engine:
        await asyncio.gather(
            *(run_agent(engine, f"{name}-agent-{a}", steps, saved) for a in range(agents))
        )
        await engine.flush()
    stats = engine.stats()
    report: dict[str, Any] = {
        "saves": stats.saves,
        "abandoned": stats.abandoned,
        "store_errors": stats.store_errors,
        "saved": saved,
    }
    print(json.dumps(report), flush=True)


def main(argv: list[str]) -> int:
    if len(argv) != 6 or argv[0] != "agents":
        print("usage: python -m tests.redis_support agents URL PREFIX NAME AGENTS SAVES")
        return 2
    _, url, prefix, name, agents, steps = argv
    asyncio.run(_agents_process(url, prefix, name, int(agents), int(steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
