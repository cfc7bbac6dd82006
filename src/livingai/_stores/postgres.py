"""PostgresStore: the execution log in PostgreSQL, shared by any number of processes.

Driver: psycopg 3 rather than asyncpg. It is one maintained driver for sync and async
code (the tests and tools use the same one), psycopg_pool is its maintained async pool
that replaces broken connections, it binds whole arrays as parameters (a batch is one
`unnest` statement), and it ships type annotations.

Each batch is one statement, so one round trip and one transaction: the rows go in in
batch order and a version already stored (a retry after a lost acknowledgement) is
skipped. The schema is created and migrated on first use, under an advisory lock, so
processes starting together on an empty database do not race. A connection the server
dropped (restart, pg_terminate_backend) is discarded by the pool and the operation runs
again on another one; it is safe to, as every append is idempotent. Failures that remain
raise errors naming the DSN with its password masked: StoreError for what may pass
(server down, no connection within `timeout`, no answer within `query_timeout`; the
engine retries those), RecordRejectedError for records the server refuses for good
(SQLSTATE classes 22 and 54: an id too long for an index, say), StoreUnusableError for
a store it refuses (bad credentials, a missing database, no privilege). While the server
is unreachable, each call asks it directly first, so that a call fails in milliseconds
rather than after the pool's wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from .._core.errors import (
    ClosedError,
    ConfigError,
    RecordRejectedError,
    StoreError,
    StoreUnusableError,
    check_setting,
)
from .._core.extras import require
from .._core.leases import fenced, held
from .._core.lifecycle import Closable
from .._core.listing import ExecutionEntry, ExecutionPage, PageQuery
from .._core.model import NodeRecord
from .._core.retention import check_keep, execution_ids_to_delete, node_ids_to_delete
from .._core.store import Fences, Lease, StoreLimits
from .._core.usage import UsageBy, UsageRow, check_grouping, utc_text
from . import postgres_sql as sql

if TYPE_CHECKING:  # at run time psycopg is imported when a store is created, not before
    import psycopg
    from psycopg_pool import AsyncConnectionPool

    Connection: TypeAlias = psycopg.AsyncConnection[Any]

logger = logging.getLogger("livingai")

T = TypeVar("T")

# A pool slot whose connection attempts keep failing is given up after this long, and the
# next request starts a fresh attempt at once. psycopg_pool's default (5 minutes, with
# delays doubling from 1 s) could leave a store idle for a minute after the server is back.
RECONNECT_SECONDS = 10.0

# PostgreSQL keeps a jsonb value up to 255 MB and a bytea one up to 1 GB; a batch goes in
# as arrays, themselves under 1 GB: states are held to half of that.
LIMITS = StoreLimits(max_body_bytes=255 * 1024 * 1024, max_state_bytes=512 * 1024 * 1024)

# SQLSTATE classes and codes that no retry can fix: the server refuses these records
# (data exception, program limit exceeded) or this store (authorization, privileges,
# a missing database, a read-only server).
_REJECTED_CLASSES = ("22", "54")
_UNUSABLE_CLASSES = ("28", "3D")
_UNUSABLE_CODES = ("42501", "25006")
_MISSING_SCHEMA = ("42P01", "3F000")  # dropped under us: migrate again
# What a refused connection says when the server answered and said no for good.
_REFUSALS = (
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
    "no password supplied",
)


class PostgresStore(Closable):
    """A store in a PostgreSQL schema; created and migrated on first use.

    `dsn` is a libpq connection string or URL. Pass `pool=` to use your own open
    psycopg_pool.AsyncConnectionPool instead (the store then never closes it; `dsn` may
    be omitted). Every wait is bounded, in seconds: `connect_timeout` for a new
    connection (a `connect_timeout` in the DSN wins), `timeout` for a pooled one,
    `query_timeout` for one statement and its rows. `application_name` tags the
    store's connections in pg_stat_activity.
    """

    limits = LIMITS

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: AsyncConnectionPool[Any] | None = None,
        schema: str = "livingai",
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        connect_timeout: float = 3.0,
        query_timeout: float = 10.0,
        application_name: str = "livingai",
    ) -> None:
        require("psycopg", "postgres")  # MissingExtraError naming the extra, if absent
        require("psycopg_pool", "postgres")
        import psycopg

        if dsn is None and pool is None:
            raise ConfigError("PostgresStore needs a dsn or a pool")
        check_setting("min_size", min_size, minimum=0, whole=True)
        check_setting(
            f"max_size (min_size={min_size})", max_size, minimum=max(1, min_size), whole=True
        )
        check_setting("timeout", timeout, minimum=0, inclusive=False)
        check_setting("connect_timeout", connect_timeout, minimum=1)  # libpq: whole seconds
        check_setting("query_timeout", query_timeout, minimum=0, inclusive=False)
        self._sql = sql.statements(schema)  # validates the name
        self.schema = schema
        self.min_size = min_size
        self.max_size = max_size
        self.timeout = timeout
        self.query_timeout = query_timeout
        self.application_name = application_name
        conninfo = pool.conninfo if pool is not None and isinstance(pool.conninfo, str) else ""
        self._dsn = dsn if dsn is not None else conninfo
        try:
            params = psycopg.conninfo.conninfo_to_dict(self._dsn)
        except psycopg.ProgrammingError as exc:
            detail = sql.scrub(str(exc), self._dsn)
            raise ConfigError(f"invalid dsn {sql.mask_dsn(self._dsn)!r}: {detail}") from None
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,  # each statement is its own transaction: one round trip
            "application_name": application_name,
        }
        if "connect_timeout" not in params:
            self._connect_kwargs["connect_timeout"] = max(1, round(connect_timeout))
        self._own_pool = pool is None
        self._pool = pool
        self._loop: asyncio.AbstractEventLoop | None = None  # where the pool runs
        self._opening: asyncio.Lock | None = None
        self._pool_open = False
        self._ready = False  # schema at SCHEMA_VERSION
        self._unreachable = False  # the last attempt found no server: probe before waiting
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresStore({sql.mask_dsn(self._dsn)!r}, schema={self.schema!r})"

    # -- connections ------------------------------------------------------------------

    def _new_pool(self) -> AsyncConnectionPool[Any]:
        from psycopg_pool import AsyncConnectionPool

        return AsyncConnectionPool(
            self._dsn,
            kwargs=self._connect_kwargs,
            min_size=self.min_size,
            max_size=self.max_size,
            open=False,
            name=f"livingai-{self.schema}",
            timeout=self.timeout,
            reconnect_timeout=RECONNECT_SECONDS,
        )

    async def _connected(self) -> AsyncConnectionPool[Any]:
        """The open pool, on a schema at the current version."""
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._ready and self._loop is loop and self._pool is not None:
            return self._pool
        if self._loop is not loop:
            # First use, or a new event loop (the engine may be driven by one asyncio.run
            # after another): a pool's tasks live on the loop that opened it, so ours is
            # replaced; one left on a finished loop is dropped, its sockets with it.
            self._loop = loop
            self._opening = asyncio.Lock()
            if self._own_pool:
                self._pool = self._new_pool()
                self._pool_open = False
        assert self._opening is not None
        async with self._opening:
            pool = self._pool
            assert pool is not None
            if not self._ready:
                # On a connection of its own: a server that is down, or that refuses this
                # store for good, is told at once, not after the pool's wait.
                if self._own_pool:
                    import psycopg

                    async with await self._connect() as conn:
                        try:
                            await self._bounded(self._migrate(conn))
                        except psycopg.Error as exc:
                            raise self._error("creating the schema failed", exc) from exc
                else:
                    await self._with_connection(pool, self._migrate)
                self._ready = True
            if self._own_pool and not self._pool_open:
                from psycopg_pool import PoolTimeout

                try:  # the server just answered: its first connections come at once
                    await pool.open(wait=True, timeout=self.timeout)
                except PoolTimeout as exc:
                    raise self._error(f"no connection within {self.timeout:g}s", exc) from exc
                finally:
                    self._pool_open = not pool.closed
        return pool

    async def _connect(self) -> Connection:
        """A connection outside the pool; the store's error for what prevents one."""
        import psycopg

        try:
            return await psycopg.AsyncConnection.connect(self._dsn, **self._connect_kwargs)
        except psycopg.Error as exc:
            self._unreachable = True
            raise self._error("cannot connect", exc) from exc

    async def _bounded(self, work: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.query_timeout):
                return await work
        except TimeoutError:
            raise StoreError(
                f"{self!r}: no answer within query_timeout={self.query_timeout:g}s"
            ) from None

    async def _run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        return await self._with_connection(await self._connected(), work)

    async def _with_connection(
        self, pool: AsyncConnectionPool[Any], work: Callable[[Connection], Awaitable[T]]
    ) -> T:
        """Run `work` on a pooled connection. A connection found dead (the server restarted
        or dropped it) is discarded and `work` runs again, once per connection the pool
        may hold: after a restart every idle one may be dead."""
        import psycopg
        from psycopg_pool import PoolClosed, PoolTimeout

        if self._unreachable and self._own_pool:
            # The server was not there last time: ask it directly (refused at once)
            # rather than wait out the pool's timeout on every call while it is down.
            async with await self._connect():
                self._unreachable = False
        attempts = 0
        while True:
            broken = False
            try:
                async with pool.connection(timeout=self.timeout) as conn:
                    try:
                        return await self._bounded(work(conn))
                    except psycopg.Error:
                        broken = conn.broken or conn.closed
                        raise
            except PoolTimeout as exc:
                self._unreachable = True
                raise self._error(f"no connection within {self.timeout:g}s", exc) from exc
            except PoolClosed as exc:
                if self._closed:
                    raise ClosedError(f"{self!r} was used after close()") from exc
                raise self._error("the connection pool is closed", exc) from exc
            except psycopg.Error as exc:
                if broken and attempts < pool.max_size:
                    attempts += 1
                    logger.info("%r: connection lost (%s); trying another", self, exc)
                    continue
                raise self._error("query failed", exc) from exc

    def _error(self, what: str, exc: BaseException) -> StoreError:
        """The store's error for a driver one: what no retry can fix is told apart."""
        detail = sql.scrub(str(exc).strip(), self._dsn) if self._dsn else str(exc).strip()
        text = f"{self!r}: {what}: {type(exc).__name__}: {detail}"
        code = str(getattr(exc, "sqlstate", None) or "")
        if code in _MISSING_SCHEMA:
            self._ready = False  # the next call creates it again
        if code.startswith(_REJECTED_CLASSES):
            return RecordRejectedError(text)
        if (
            code.startswith(_UNUSABLE_CLASSES)
            or code in _UNUSABLE_CODES
            or (not code and any(refusal in detail for refusal in _REFUSALS))
        ):
            return StoreUnusableError(f"{text}; check the URL, the user and its privileges")
        return StoreError(text)

    async def _migrate(self, conn: Connection) -> None:
        """Bring the schema to SCHEMA_VERSION in one transaction, under an advisory lock
        so that processes starting together take turns; a newer schema is left alone.
        Then fill the index of executions stored before it (`_backfill`)."""
        if await self._version(conn) == sql.SCHEMA_VERSION:  # the usual case: no lock
            await self._backfill(conn)
            return
        key = (sql.LOCK_CLASS, self.schema)
        try:
            # The lock is the session's, taken between transactions (commit() ends the one
            # a connection not in autocommit has open, and does nothing in autocommit): the
            # migration's transaction begins once the lock is held, so it sees what the
            # last holder committed (see LOCK_CLASS).
            await conn.commit()
            await conn.execute(self._sql.lock, key)
            await conn.commit()
            migrated = await self._migrate_locked(conn)
            await conn.execute(self._sql.unlock, key)
            await conn.commit()
        except BaseException:
            # Closing ends the session and its lock, whatever state the failure left the
            # connection in (a pool replaces a closed one).
            await conn.close()
            raise
        if migrated:
            logger.info("%r: schema migrated to version %d", self, sql.SCHEMA_VERSION)
        await self._backfill(conn)

    async def _backfill(self, conn: Connection) -> None:
        """Index the executions stored before the index (migration 5), a chunk a
        statement (each its own transaction, so writers wait at most one chunk); what is
        filled stays filled, so one stopped half-way is finished by the next connection.
        Costs one indexed probe when there is nothing to do."""
        if not await _scalar(conn, self._sql.unindexed):
            return
        filled = 0
        while True:
            async with conn.transaction():
                cursor = await conn.execute(self._sql.backfill)
            if cursor.rowcount <= 0:
                break
            filled += cursor.rowcount
        logger.info("%r: indexed %d executions stored before the index", self, filled)

    async def _migrate_locked(self, conn: Connection) -> bool:
        """The migration, under the lock; False when another process has just done it."""
        q = self._sql
        async with conn.transaction():
            version = await self._version(conn)
            if version is not None and version > sql.SCHEMA_VERSION:
                raise StoreUnusableError(
                    f"{self!r} has schema version {version}, newer than this livingai "
                    f"knows ({sql.SCHEMA_VERSION}); upgrade livingai"
                )
            if version == sql.SCHEMA_VERSION:
                return False
            if version is None:
                if not await _scalar(conn, q.schema_exists, (sql.quote_ident(self.schema),)):
                    await conn.execute(q.create_schema)
                await conn.execute(q.create_version_table)
                version = 0
            for script in q.migrations[version:]:
                await conn.execute(script)
            await conn.execute(q.write_version, (sql.SCHEMA_VERSION,))
        return True

    async def _version(self, conn: Connection) -> int | None:
        """The schema's version; None while it has no schema_version table."""
        table = sql.qualified(self.schema, "schema_version")
        if not await _scalar(conn, self._sql.version_table_exists, (table,)):
            return None
        return int(await _scalar(conn, self._sql.read_version) or 0)

    # -- the store contract -----------------------------------------------------------

    async def append(self, records: Sequence[NodeRecord], *, fences: Fences | None = None) -> None:
        self._check_open()
        if not records:
            return
        params = sql.to_columns(records)

        async def write(conn: Connection) -> list[str]:
            if not fences:
                await conn.execute(self._sql.append, params)
                return []
            ids, tokens = list(fences), list(fences.values())
            cursor = await conn.execute(self._sql.append_fenced, (ids, tokens, *params))
            return [str(row[0]) for row in await cursor.fetchall()]

        lost = await self._run(write)
        if lost:
            raise fenced(self, lost)

    async def usage(
        self,
        by: UsageBy,
        *,
        execution_ids: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageRow]:
        low, high = utc_text(since), utc_text(until)
        statement = self._sql.usage(
            check_grouping(by), execution_ids is not None, low is not None, high is not None
        )
        args: list[object] = [] if execution_ids is None else [list(execution_ids)]
        args += [bound for bound in (low, high) if bound is not None]

        async def read(conn: Connection) -> list[UsageRow]:
            cursor = await conn.execute(statement, args)
            return [
                UsageRow(str(k), int(n), int(p), int(c), float(d))
                for k, n, p, c, d in await cursor.fetchall()
            ]

        return await self._run(read)

    # -- retention ----------------------------------------------------------------------
    # The space of deleted rows and dropped blobs is reused once (auto)vacuum has run; the
    # files shrink only with VACUUM FULL.

    async def delete_executions(self, execution_ids: Sequence[str]) -> int:
        self._check_open()
        ids = execution_ids_to_delete(execution_ids)
        if not ids:
            return 0
        return await self._count(self._sql.delete_executions, (ids,))

    async def delete_nodes(self, execution_id: str, node_ids: Sequence[str]) -> int:
        self._check_open()
        ids = node_ids_to_delete(execution_id, node_ids)
        if not ids:
            return 0

        async def delete(conn: Connection) -> int:
            async with conn.transaction():
                deleted = int(await _scalar(conn, self._sql.delete_nodes, (execution_id, ids)))
                if deleted:  # what is left of the execution says what it is now
                    await conn.execute(self._sql.reindex_execution, (execution_id,))
            return deleted

        return await self._run(delete)

    async def drop_checkpoints(self, execution_id: str, keep: int) -> int:
        self._check_open()
        args = (execution_id, check_keep(keep), execution_id)
        return await self._count(self._sql.drop_checkpoints, args)

    async def _count(self, statement: str, args: tuple[object, ...]) -> int:
        async def run(conn: Connection) -> int:
            return int(await _scalar(conn, statement, args) or 0)

        return await self._run(run)

    # -- leases -------------------------------------------------------------------------

    async def acquire_lease(
        self, execution_id: str, worker_id: str, seconds: float, *, take_over: str | None = None
    ) -> Lease:
        async def take(conn: Connection) -> Lease:
            cursor = await conn.execute(
                self._sql.acquire_lease, (execution_id, worker_id, seconds, take_over)
            )
            row = await cursor.fetchone()
            if row is not None:
                return _lease(row)
            cursor = await conn.execute(self._sql.lease_holder, (execution_id,))
            holder = await cursor.fetchone()
            if holder is None:  # released between the two statements: try again
                return await take(conn)
            raise held(_lease(holder), float(holder[4]))

        return await self._run(take)

    async def renew_lease(self, lease: Lease, seconds: float) -> Lease | None:
        async def renew(conn: Connection) -> Lease | None:
            cursor = await conn.execute(
                self._sql.renew_lease, (seconds, lease.execution_id, lease.token)
            )
            row = await cursor.fetchone()
            return None if row is None else _lease(row)

        return await self._run(renew)

    async def release_lease(self, lease: Lease) -> None:
        async def release(conn: Connection) -> None:
            await conn.execute(self._sql.release_lease, (lease.execution_id, lease.token))

        await self._run(release)

    async def leases(self) -> list[Lease]:
        async def read(conn: Connection) -> list[Lease]:
            cursor = await conn.execute(self._sql.live_leases)
            return [_lease(row) for row in await cursor.fetchall()]

        return await self._run(read)

    async def _query(self, statement: str, args: tuple[str, ...]) -> list[NodeRecord]:
        async def read(conn: Connection) -> list[NodeRecord]:
            cursor = await conn.execute(statement, args, binary=True)
            return [NodeRecord.from_row(row) for row in await cursor.fetchall()]

        return await self._run(read)

    async def read(self, node_id: str) -> NodeRecord | None:
        rows = await self._query(self._sql.read_node, (node_id,))
        return rows[0] if rows else None

    async def list_nodes(self, execution_id: str) -> list[NodeRecord]:
        return await self._query(self._sql.list_nodes, (execution_id,))

    async def list_versions(self, execution_id: str) -> list[NodeRecord]:
        return await self._query(self._sql.list_versions, (execution_id,))

    async def latest_checkpoint(self, execution_id: str) -> NodeRecord | None:
        rows = await self._query(self._sql.latest_checkpoint, (execution_id,))
        return rows[0] if rows else None

    async def list_executions(self) -> list[str]:
        async def read(conn: Connection) -> list[str]:
            cursor = await conn.execute(self._sql.list_executions)
            return [str(row[0]) for row in await cursor.fetchall()]

        return await self._run(read)

    async def open_runs(self) -> list[ExecutionEntry]:
        return await self._entries(self._sql.open_runs, [])

    async def list_page(self, query: PageQuery) -> ExecutionPage:
        after = query.after
        statement = self._sql.page(
            query.status is not None,
            query.agent is not None,
            query.since is not None,
            query.until is not None,
            after is not None,
        )
        given = (query.status, query.agent, query.since, query.until)
        args: list[object] = [value for value in given if value is not None]
        args += [] if after is None else list(after)
        args.append(query.limit + 1)

        return ExecutionPage.newest_first(await self._entries(statement, args), query.limit)

    async def _entries(self, statement: str, args: Sequence[object]) -> list[ExecutionEntry]:
        """Index rows (execution id, started_at, agent, status) as entries."""

        async def read(conn: Connection) -> list[ExecutionEntry]:
            cursor = await conn.execute(statement, args)
            return [
                ExecutionEntry(str(x), str(at), str(agent), status)
                for x, at, agent, status in await cursor.fetchall()
            ]

        return await self._run(read)

    async def history(self, node_id: str) -> list[NodeRecord]:
        return await self._query(self._sql.node_history, (node_id,))

    async def close(self) -> None:
        """Close the store's own pool (a pool passed in is left open)."""
        await self._closing(self._release)

    async def _release(self) -> None:
        pool = self._pool
        if not self._own_pool or pool is None or not self._pool_open:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            await pool.close()


def _lease(row: Sequence[Any]) -> Lease:
    return Lease(str(row[0]), str(row[1]), int(row[2]), float(row[3]))


async def _scalar(conn: Connection, statement: str, args: tuple[object, ...] = ()) -> Any:
    cursor = await conn.execute(statement, args)
    row = await cursor.fetchone()
    return None if row is None else row[0]
