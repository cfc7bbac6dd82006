"""SQLiteStore: the embedded, zero-config default store.

One writer thread owns the write connection and commits each batch in one transaction;
one reader thread owns a read connection, so reads never wait behind writes (WAL).
Several processes may open the same file: writes take the lock up front
(BEGIN IMMEDIATE) and wait for it under a busy timeout, so no "database is locked"
reaches the caller while another process commits.

Durability: every committed batch survives a crash of the process. With
synchronous="NORMAL" (the default, WAL) a power loss or OS crash can roll back the
batches committed since the last WAL checkpoint, never corrupting the file; with
synchronous="FULL" each commit is fsynced and survives power loss too.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from .._core.errors import (
    ConfigError,
    RecordRejectedError,
    StoreError,
    StoreUnusableError,
    check_setting,
)
from .._core.leases import fenced, next_lease, still_held
from .._core.lifecycle import Closable
from .._core.listing import ExecutionEntry, ExecutionPage, PageQuery, agent_of, is_run_record
from .._core.model import NodeRecord
from .._core.retention import check_keep, execution_ids_to_delete, node_ids_to_delete
from .._core.store import Fences, Lease, StoreLimits
from .._core.usage import UsageBy, UsageRow, check_grouping, utc_text
from . import sqlite_sql as schema
from .worker import Worker

logger = logging.getLogger("livingai")

T = TypeVar("T")

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
PAGE_SIZE = 16384  # new files: blobs write ~1.8x faster than at 4096, small commits ~15% slower
# WAL checkpoints copy the log into the file and fsync: run concurrently with a burst of
# commits they stall the event loop (measured: 30 ms). So the checkpointer waits for a
# quiet spell, unless the log has grown past CHECKPOINT_INLINE_BYTES: then the writer
# folds it back itself (backpressure on the store; the engine keeps queueing).
CHECKPOINT_EVERY_BYTES = 8 * 1024 * 1024
CHECKPOINT_QUIET_SECONDS = 0.1
CHECKPOINT_INLINE_BYTES = 1024 * 1024 * 1024

# SQLite keeps a string, a blob and a whole row in at most SQLITE_MAX_LENGTH bytes
# (1,000,000,000 unless built otherwise): room for a state and the node's JSON body.
LIMITS = StoreLimits(max_body_bytes=100_000_000, max_state_bytes=890_000_000)

# Primary result codes (https://sqlite.org/rescode.html) that no retry can fix.
_UNUSABLE = {
    3: "permission denied",  # SQLITE_PERM
    8: "the database file or its directory is read-only",  # SQLITE_READONLY
    11: "the database file is damaged",  # SQLITE_CORRUPT
    14: "the file cannot be opened: is its directory there and writable?",  # SQLITE_CANTOPEN
    23: "access denied",  # SQLITE_AUTH
    26: "the file is not a SQLite database",  # SQLITE_NOTADB
}
_REJECTED = {18, 20, 25}  # SQLITE_TOOBIG, SQLITE_MISMATCH, SQLITE_RANGE: these records


class SQLiteStore(Closable):
    """A store in one SQLite file; the schema is created and migrated on first use."""

    limits = LIMITS

    def __init__(
        self,
        path: str | Path = "livingai.db",
        *,
        synchronous: str = "NORMAL",
        busy_timeout_seconds: float = 30.0,
    ) -> None:
        if not isinstance(synchronous, str) or synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigError(f"synchronous must be one of {_SYNCHRONOUS}; got {synchronous!r}")
        check_setting("busy_timeout_seconds", busy_timeout_seconds, minimum=0)
        self.path = str(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout_seconds = busy_timeout_seconds
        self._memory = self.path == ":memory:"
        self._writer = Worker("livingai-sqlite-writer")
        # An in-memory database exists only on its own connection: read through the writer.
        self._reader = self._writer if self._memory else Worker("livingai-sqlite-reader")
        # WAL checkpoints run on their own thread and connection, never inside a commit.
        self._checkpointer = None if self._memory else Worker("livingai-sqlite-checkpointer")
        self._committed = threading.Event()  # set by every commit: the checkpointer waits
        # for a CHECKPOINT_QUIET_SECONDS spell without one
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpointing = False
        self._bytes_since_checkpoint = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # -- connections (each touched only by its own thread) --------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_seconds,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # each connection stays on its own worker thread
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_seconds * 1000)}")
        return conn

    def _writer_conn(self) -> sqlite3.Connection:
        if self._write_conn is None:
            conn = self._connect()
            try:
                if not self._memory:
                    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only a new file takes it
                    _retry_locked(
                        lambda: conn.execute("PRAGMA journal_mode = WAL"),
                        self.busy_timeout_seconds,
                    )
                    # A checkpoint inside COMMIT copies the WAL into the file and fsyncs: tens
                    # of milliseconds on the agent's path. The checkpointer thread does it.
                    conn.execute("PRAGMA wal_autocheckpoint = 0")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                _migrate(conn, self.path)
                _backfill(conn, self.path)
            except BaseException:
                conn.close()  # not kept (the next call opens a new one), so not left open
                raise
            self._write_conn = conn
        return self._write_conn

    def _reader_conn(self) -> sqlite3.Connection:
        if self._memory:
            return self._writer_conn()
        if self._read_conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = 1")
            self._read_conn = conn
        return self._read_conn

    def _after_commit(self, conn: sqlite3.Connection, size: int) -> None:
        """On the writer thread: have the WAL folded back into the file now and then."""
        if self._checkpointer is None:
            return
        self._committed.set()
        self._bytes_since_checkpoint += size
        if self._bytes_since_checkpoint >= CHECKPOINT_INLINE_BYTES:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._bytes_since_checkpoint = 0
        elif self._bytes_since_checkpoint >= CHECKPOINT_EVERY_BYTES and not self._checkpointing:
            self._checkpointing = True
            self._bytes_since_checkpoint = 0
            self._checkpointer.submit(self._checkpoint_when_quiet)

    def _checkpoint_when_quiet(self) -> None:
        try:
            while self._committed.wait(CHECKPOINT_QUIET_SECONDS) and not self._closed:
                self._committed.clear()
            if self._checkpoint_conn is None:
                self._checkpoint_conn = self._connect()
            self._checkpoint_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # a later commit asks again; nothing is lost
            logger.warning("%r: WAL checkpoint failed: %s", self, exc)
        finally:
            self._checkpointing = False

    async def _run(self, worker: Worker, fn: Callable[[], T]) -> T:
        self._check_open()
        try:
            return await asyncio.wrap_future(worker.submit(fn))
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """The store's error for a SQLite error, by its result code: what no retry can
        fix is told apart from what may pass (a lock, a full disk)."""
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        if code in _UNUSABLE:
            return StoreUnusableError(
                f"{self!r}: {exc} ({name}): {_UNUSABLE[code]}; fix that, then save again"
            )
        if code in _REJECTED:
            return RecordRejectedError(f"{self!r}: {exc} ({name})")
        return StoreError(f"{self!r}: {exc} ({name})")

    async def _ensure_schema(self) -> None:
        if self._write_conn is None:
            await self._run(self._writer, self._writer_conn)

    # -- the store contract -----------------------------------------------------------

    async def append(self, records: Sequence[NodeRecord], *, fences: Fences | None = None) -> None:
        rows = [record.as_row() for record in records]
        size = sum(record.size for record in records)
        started: dict[str, str] = {}  # each execution's first version here: when it started
        runs: dict[str, tuple[str, str, str]] = {}  # its newest run record's status, agent
        for record in records:
            started.setdefault(record.execution_id, record.created_at)
            if is_run_record(record):
                runs[record.execution_id] = (record.status, agent_of(record), record.execution_id)
        executions = list(started.items())

        def insert(conn: sqlite3.Connection) -> None:
            if fences:
                lost = [
                    execution_id
                    for execution_id, token in fences.items()
                    if not still_held(_lease_row(conn, execution_id), token)
                ]
                if lost:
                    raise fenced(self, lost)
            for chunk in schema.chunked(rows):
                conn.execute(schema.insert_nodes(len(chunk)), [v for row in chunk for v in row])
            for pairs in schema.chunked(executions, schema.ROWS_PER_INSERT_EXECUTIONS):
                conn.execute(
                    schema.insert_executions(len(pairs)), [v for pair in pairs for v in pair]
                )
            if runs:
                conn.executemany(schema.INDEX_RUN, list(runs.values()))

        def write() -> None:
            conn = self._writer_conn()
            _in_transaction(conn, lambda: insert(conn))
            self._after_commit(conn, size)

        if rows:
            await self._run(self._writer, write)

    async def usage(
        self,
        by: UsageBy,
        *,
        execution_ids: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageRow]:
        low, high = utc_text(since), utc_text(until)
        sql = schema.usage_query(
            check_grouping(by), execution_ids is not None, low is not None, high is not None
        )
        ids = None if execution_ids is None else json.dumps(list(execution_ids))
        args = {"ids": ids, "since": low, "until": high}
        await self._ensure_schema()
        rows = await self._run(
            self._reader, lambda: self._reader_conn().execute(sql, args).fetchall()
        )
        return [
            UsageRow(str(k), int(n), int(p), int(c), float(d))
            for k, n, p, c, d in rows
            if n  # the ungrouped total's row of zeros, when nothing matched
        ]

    # -- retention --------------------------------------------------------------------
    # Freed pages are reused by later writes; the file itself shrinks only with VACUUM.

    async def delete_executions(self, execution_ids: Sequence[str]) -> int:
        self._check_open()
        ids = json.dumps(execution_ids_to_delete(execution_ids))

        def delete(conn: sqlite3.Connection) -> int:
            deleted = conn.execute(schema.DELETE_NODES, (ids,)).rowcount
            conn.execute(schema.DELETE_EXECUTIONS, (ids,))
            conn.execute(schema.DELETE_LEASES, (ids,))
            return int(deleted)

        return await self._write(delete)

    async def delete_nodes(self, execution_id: str, node_ids: Sequence[str]) -> int:
        self._check_open()
        ids = node_ids_to_delete(execution_id, node_ids)
        if not ids:
            return 0
        named = json.dumps(ids)

        def delete(conn: sqlite3.Connection) -> int:
            deleted = conn.execute(schema.DELETE_NAMED_NODES, (execution_id, named)).rowcount
            if deleted:
                conn.execute(schema.DELETE_EMPTY_EXECUTION, (execution_id, execution_id))
                conn.execute(schema.REINDEX_EXECUTION, (execution_id,))  # what is left says
            return int(deleted)

        return await self._write(delete)

    async def drop_checkpoints(self, execution_id: str, keep: int) -> int:
        self._check_open()
        args = (execution_id, execution_id, check_keep(keep))
        return await self._write(
            lambda conn: int(conn.execute(schema.DROP_CHECKPOINTS, args).rowcount)
        )

    async def _write(self, work: Callable[[sqlite3.Connection], int]) -> int:
        """`work` in one write transaction on the writer thread."""

        def write() -> int:
            conn = self._writer_conn()
            result = _in_transaction(conn, lambda: work(conn))
            self._after_commit(conn, 0)
            return result

        return await self._run(self._writer, write)

    # -- leases -----------------------------------------------------------------------

    async def acquire_lease(
        self, execution_id: str, worker_id: str, seconds: float, *, take_over: str | None = None
    ) -> Lease:
        def take(conn: sqlite3.Connection) -> Lease:
            current = _lease_row(conn, execution_id)
            lease = next_lease(current, execution_id, worker_id, seconds, time.time(), take_over)
            conn.execute(
                schema.WRITE_LEASE, (execution_id, worker_id, lease.token, lease.expires_at)
            )
            return lease

        def write() -> Lease:
            conn = self._writer_conn()
            return _in_transaction(conn, lambda: take(conn))

        return await self._run(self._writer, write)

    async def renew_lease(self, lease: Lease, seconds: float) -> Lease | None:
        def renew() -> Lease | None:
            now = time.time()
            cursor = self._writer_conn().execute(
                schema.RENEW_LEASE, (now + seconds, lease.execution_id, lease.token)
            )
            if cursor.rowcount != 1:
                return None
            return Lease(lease.execution_id, lease.worker_id, lease.token, now + seconds)

        return await self._run(self._writer, renew)

    async def release_lease(self, lease: Lease) -> None:
        await self._run(
            self._writer,
            lambda: self._writer_conn().execute(
                schema.RELEASE_LEASE, (lease.execution_id, lease.token)
            ),
        )

    async def leases(self) -> list[Lease]:
        await self._ensure_schema()
        rows = await self._run(
            self._reader,
            lambda: self._reader_conn().execute(schema.LIVE_LEASES, (time.time(),)).fetchall(),
        )
        return [Lease(*row) for row in rows]

    async def _query(self, sql: str, args: tuple[str, ...]) -> list[NodeRecord]:
        await self._ensure_schema()
        rows = await self._run(
            self._reader, lambda: self._reader_conn().execute(sql, args).fetchall()
        )
        return [NodeRecord.from_row(row) for row in rows]

    async def read(self, node_id: str) -> NodeRecord | None:
        rows = await self._query(schema.READ_NODE, (node_id,))
        return rows[0] if rows else None

    async def list_nodes(self, execution_id: str) -> list[NodeRecord]:
        return await self._query(schema.LIST_NODES, (execution_id,))

    async def list_versions(self, execution_id: str) -> list[NodeRecord]:
        return await self._query(schema.LIST_VERSIONS, (execution_id,))

    async def latest_checkpoint(self, execution_id: str) -> NodeRecord | None:
        rows = await self._query(schema.LATEST_CHECKPOINT, (execution_id,))
        return rows[0] if rows else None

    async def list_executions(self) -> list[str]:
        await self._ensure_schema()
        rows = await self._run(
            self._reader,
            lambda: self._reader_conn().execute(schema.LIST_EXECUTIONS).fetchall(),
        )
        return [str(row[0]) for row in rows]

    async def open_runs(self) -> list[ExecutionEntry]:
        await self._ensure_schema()
        rows = await self._run(
            self._reader, lambda: self._reader_conn().execute(schema.OPEN_RUNS).fetchall()
        )
        return [_entry(row) for row in rows]

    async def list_page(self, query: PageQuery) -> ExecutionPage:
        after = query.after
        sql = schema.page_sql(
            query.status is not None,
            query.agent is not None,
            query.since is not None,
            query.until is not None,
            after is not None,
        )
        args = {
            "status": query.status,
            "agent": query.agent,
            "since": query.since,
            "until": query.until,
            "after_at": None if after is None else after[0],
            "after_id": None if after is None else after[1],
            "n": query.limit + 1,
        }
        await self._ensure_schema()
        rows = await self._run(
            self._reader, lambda: self._reader_conn().execute(sql, args).fetchall()
        )
        return ExecutionPage.newest_first([_entry(row) for row in rows], query.limit)

    async def history(self, node_id: str) -> list[NodeRecord]:
        return await self._query(schema.NODE_HISTORY, (node_id,))

    async def close(self) -> None:
        await self._closing(self._release)

    async def _release(self) -> None:
        self._committed.set()  # a checkpointer waiting for quiet stops waiting
        workers = [
            (self._checkpointer, "_checkpoint_conn"),
            (self._reader, "_read_conn"),
            (self._writer, "_write_conn"),  # last: the last one closed folds the WAL back
        ]
        for worker, attribute in workers:
            if worker is not None:  # on the worker's thread, after anything it still has
                await asyncio.wrap_future(worker.submit(functools.partial(self._close, attribute)))
        for worker, _ in workers:
            if worker is not None:
                worker.stop()

    def _close(self, attribute: str) -> None:
        conn: sqlite3.Connection | None = getattr(self, attribute)
        if conn is not None:
            conn.close()
            setattr(self, attribute, None)


def _in_transaction(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
    """`work` in one write transaction, the lock taken up front; rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _lease_row(conn: sqlite3.Connection, execution_id: str) -> Lease | None:
    row = conn.execute(schema.READ_LEASE, (execution_id,)).fetchone()
    return None if row is None else Lease(*row)


def _retry_locked(action: Callable[[], object], seconds: float) -> None:
    """Repeat `action` while another process holds a lock the busy handler does not cover."""
    deadline = time.monotonic() + seconds
    delay = 0.005
    while True:
        try:
            action()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)  # on the store's own thread, never the event loop
        delay = min(delay * 2, 0.2)


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the schema to SCHEMA_VERSION in one transaction; safe when processes race."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version == schema.SCHEMA_VERSION:
        return
    _retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"), 60.0)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > schema.SCHEMA_VERSION:
            raise StoreUnusableError(
                f"SQLiteStore({path!r}) has schema version {version}, newer than this "
                f"livingai knows ({schema.SCHEMA_VERSION}); upgrade livingai"
            )
        for number in range(version, schema.SCHEMA_VERSION):
            for statement in schema.MIGRATIONS[number].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _backfill(conn: sqlite3.Connection, path: str) -> None:
    """Fill the index rows of executions stored before it existed (migration 5), a chunk
    a transaction, so that writers in other processes wait at most one chunk; what is
    filled stays filled, so a process stopped half-way leaves the rest to the next."""
    if conn.execute(schema.UNINDEXED).fetchone() is None:  # the usual case: no lock taken
        return
    filled = 0
    while True:
        cursor = _in_transaction(conn, lambda: conn.execute(schema.BACKFILL))
        if cursor.rowcount <= 0:
            break
        filled += cursor.rowcount
    if filled:
        logger.info("SQLiteStore(%r): indexed %d executions stored before the index", path, filled)


def _entry(row: Sequence[Any]) -> ExecutionEntry:
    """An index row (execution id, started_at, agent, status) as an entry."""
    execution_id, started_at, agent, status = row
    return ExecutionEntry(str(execution_id), str(started_at), str(agent), status)
