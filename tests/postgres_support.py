"""PostgreSQL helpers for the tests: a store factory on a throwaway schema, and a private
cluster (initdb + postgres on a spare loopback port) that a test may SIGKILL and restart.

The private cluster needs the PostgreSQL server binaries (PG_BIN, default
/usr/lib/postgresql/15/bin). PostgreSQL refuses to run as root, so under root it runs as
the `postgres` OS user; without binaries or that user the test skips and says why (a
failure under LIVINGAI_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import psycopg

from livingai import CheckpointStore, PostgresStore
from livingai._stores.postgres_sql import quote_ident
from tests.services import free_port, skip_or_fail

PG_BIN = Path(os.environ.get("LIVINGAI_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def postgres_factory(dsn: str, schema: str) -> Iterator[Callable[[], CheckpointStore]]:
    """Stores on `schema` of the server at `dsn`; the schema is dropped afterwards.

    The schema is created up front, empty, as a deployed database would have it: creating
    it on first use (tested in test_postgres.py) takes tens of milliseconds of DDL, which
    would otherwise land inside the first save's time budget in the engine tests."""
    try:
        create_schema(dsn, schema)
        yield lambda: PostgresStore(dsn, schema=schema)
    finally:
        drop_schema(dsn, schema)


def create_schema(dsn: str, schema: str) -> None:
    """Have a PostgresStore create and migrate `schema`, from a thread of its own (so that
    no event loop of the caller's thread is touched)."""

    async def first_use() -> None:
        store = PostgresStore(dsn, schema=schema)
        try:
            await store.list_executions()
        finally:
            await store.close()

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, first_use()).result(timeout=60)


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")


def _children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (PostgreSQL's backends and helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ")"
            fields = stat.rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie holds no shared memory or socket


class PrivateCluster:
    """A PostgreSQL cluster of its own, on a spare loopback port, in a temporary directory.

    `with PrivateCluster() as cluster:` runs initdb (not the server); then `start()`,
    `kill()` (SIGKILL to the postmaster and every backend: a crash), `start()` again.
    Everything is killed and removed on exit.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self._uid: int | None = None  # under root, PostgreSQL runs as the postgres user
        self._gid: int | None = None

    def __enter__(self) -> PrivateCluster:
        for binary in ("initdb", "postgres"):
            if not (PG_BIN / binary).is_file():
                skip_or_fail(
                    f"PostgreSQL server binaries not found in {PG_BIN}; set LIVINGAI_TEST_PG_BIN"
                )
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                skip_or_fail(
                    "running as root and there is no `postgres` OS user to run PostgreSQL as"
                )
            self._uid, self._gid = user.pw_uid, user.pw_gid
        # Short: the server's unix socket goes here too, and its path must fit in 107 bytes.
        self._dir = Path(tempfile.mkdtemp(prefix="lvpg-"))
        try:
            if self._uid is not None and self._gid is not None:
                os.chown(self._dir, self._uid, self._gid)
            self._log = self._dir / "server.log"
            initdb = [str(PG_BIN / "initdb"), "-D", str(self._dir / "data"), "-U", "postgres"]
            result = subprocess.run(
                [*initdb, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=self._dir,
                check=False,
                user=self._uid,
                group=self._gid,
            )
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it accepts connections. Right after a kill the
        old backends may still hold shared memory: a refused start is tried again."""
        assert self._dir is not None
        assert self._log is not None
        assert not self.running, "already running"
        deadline = time.monotonic() + timeout
        server = [str(PG_BIN / "postgres"), "-D", str(self._dir / "data"), "-p", str(self.port)]
        while True:
            with self._log.open("ab") as log:
                self._process = subprocess.Popen(
                    [*server, "-k", str(self._dir), "-c", "listen_addresses=127.0.0.1"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._dir,
                    start_new_session=True,
                    user=self._uid,
                    group=self._gid,
                )
            while self._process.poll() is None:
                if self._accepts_connections():
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"PostgreSQL did not start:\n{self.log_tail()}")
                time.sleep(0.05)  # polling the server's readiness, with a deadline
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL exited at start:\n{self.log_tail()}")
            time.sleep(0.1)  # it exited (shared memory still held): poll again

    def _accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.dsn, connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def kill(self, timeout: float = 30.0) -> None:
        """SIGKILL the postmaster and each of its processes, and wait until they are gone."""
        process = self._process
        assert process is not None, "never started"
        assert process.poll() is None, "not running"
        children = _children(process.pid)
        process.send_signal(signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout)
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in children):
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL processes {children} outlived SIGKILL")
            time.sleep(0.01)  # polling for the processes to be gone, with a deadline

    def log_tail(self, lines: int = 30) -> str:
        if self._log is None or not self._log.exists():
            return ""
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def _cleanup(self) -> None:
        try:
            if self.running:
                self.kill()
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
