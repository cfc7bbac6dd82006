"""TieredStore: a fast hot store in front of a durable cold one (Redis over PostgreSQL).

What is durable when. `append` returns once the HOT store holds the records: that is the
acknowledgement the engine waits for. The records are then queued in this process and
copied to the COLD store behind it by a background task: in append order, in batches (one
cold append per `batch_bytes`, or for whatever has waited `flush_interval_seconds`),
retried with backoff until they land (the commit queue the engine uses too).
`stats().pending_cold` counts what is not copied yet.

So an acknowledged save is exactly as durable as the hot store makes it. With a hot
store that has no persistence (Redis with `save ""` and `appendonly no`), a crash or
restart of the hot server LOSES every record not yet copied to the cold store: about
`flush_interval_seconds` of saves while the cold store keeps up, everything since it
stopped keeping up when it is down or slow. Redis's default RDB snapshots only shrink
that to what was written since the last snapshot. For full durability give Redis an
append-only file fsynced on every write, and forbid evictions:

    appendonly yes
    appendfsync always          # everysec: up to a second of saves at risk on a crash
    maxmemory-policy noeviction

(in redis.conf, or `CONFIG SET` each on a running server). Without AOF, prefer
`save ""`, so that Redis restarts empty: one restarted from an older RDB snapshot holds
old versions of nodes saved since, and `read()` returns such a stale version until the
node is saved again (the lists and `latest_checkpoint` stay exact: they merge in the
cold store).

The executions' index (open runs, pages of the listing) is put together from both
stores' indexes, as tiered_index.py says.

Reads. The cold store holds the oldest part of the log, this process's queue the records
on their way there, the hot store the recent part (everything, or only what was written
since it lost data: a flush, a restart, expiry). Lists are merged in that order, without
duplicates by version_id; `read` takes the queue, then the hot store, then the cold one.
So once the queue is drained, every execution is complete from the cold store alone,
but for a record the cold store refused for good (counted in `stats().rejected` and
logged): it stays in the hot store only, and merged lists show it after the cold ones.
Appends go through one lock, so the hot store, the queue and the cold store all hold the
same order.

Stopping. `close()` drains the queue (within `close_timeout_seconds`), then closes both
stores; what it could not copy is counted in `abandoned` and logged, and stays in the hot
store only. A loop or a process that ends without close() gets the same bounded drain.
After a process died with records queued, those are in the hot store only: `resync()` at
start-up, before saving, queues them for the cold store again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from .._core.commits import CommitQueue, Write
from .._core.errors import (
    ConfigError,
    RecordRejectedError,
    StoreError,
    StoreUnusableError,
    check_setting,
)
from .._core.lifecycle import Closable
from .._core.listing import (
    OPEN,
    ExecutionEntry,
    ExecutionPage,
    PageQuery,
    is_run_record,
    run_record_id,
)
from .._core.model import NodeRecord
from .._core.retention import check_keep, execution_ids_to_delete, node_ids_to_delete
from .._core.store import (
    CheckpointStore,
    Fences,
    Lease,
    LeaseStore,
    RetentionStore,
    StoreLimits,
    UsageStore,
    limits_of,
    open_runs_of,
    page_of,
)
from .._core.usage import UsageBy, UsageRow, add_up, check_grouping, merge
from . import tiered_index

logger = logging.getLogger("livingai")

T = TypeVar("T")
U = TypeVar("U")

_MiB = 1024 * 1024
COLD_RETRY_SECONDS = 5.0  # after a failed cold read, reads leave the cold store out this long


@dataclass(frozen=True)
class TieredStats:
    """The cold copy's counters since the store was created."""

    pending_cold: int  # acknowledged (in the hot store), not yet copied to the cold store
    pending_cold_bytes: int
    moved: int  # records copied to the cold store
    cold_batches: int  # successful cold appends, each one batch
    cold_failures: int  # cold appends that raised; transient ones are retried until they land
    rejected: int  # records the cold store refused for good; each logged; hot only
    abandoned: int  # records given up (close() timed out, exit); each logged; hot only


class TieredStore(Closable):
    """A CheckpointStore over two: saves are acknowledged by `hot`, copied to `cold` behind."""

    def __init__(
        self,
        hot: CheckpointStore,
        cold: CheckpointStore,
        *,
        batch_bytes: int = 1 * _MiB,  # each cold batch is encoded on the loop: keep it short
        flush_interval_seconds: float = 0.5,
        retry_max_delay_seconds: float = 5.0,
        close_timeout_seconds: float = 30.0,
    ) -> None:
        check_setting("batch_bytes", batch_bytes, minimum=1, whole=True)
        check_setting("flush_interval_seconds", flush_interval_seconds, minimum=0)
        check_setting(
            "retry_max_delay_seconds", retry_max_delay_seconds, minimum=0, inclusive=False
        )
        check_setting("close_timeout_seconds", close_timeout_seconds, minimum=0)
        self.hot = hot
        self.cold = cold
        self.close_timeout_seconds = close_timeout_seconds
        self._queue = CommitQueue(
            self,
            lambda records, _: cold.append(records),  # leases live in the hot store
            what="cold append",
            lost="records were NOT copied to the cold store (they are in the hot store only)",
            max_batch_bytes=batch_bytes,
            linger_seconds=flush_interval_seconds,
            retry_max_delay_seconds=retry_max_delay_seconds,
            exit_flush_seconds=close_timeout_seconds,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._cold_down_until = 0.0  # loop time before which reads skip the cold store
        self._closed = False

    def __repr__(self) -> str:
        return f"TieredStore(hot={self.hot!r}, cold={self.cold!r})"

    @property
    def limits(self) -> StoreLimits:
        """What both stores keep: every record goes to each."""
        return limits_of(self.hot) & limits_of(self.cold)

    def stats(self) -> TieredStats:
        queue = self._queue
        return TieredStats(
            pending_cold=len(queue),
            pending_cold_bytes=queue.bytes,
            moved=queue.committed,
            cold_batches=queue.commits,
            cold_failures=queue.failures,
            rejected=queue.rejected,
            abandoned=queue.abandoned,
        )

    # -- lifecycle ------------------------------------------------------------------

    def _bind_loop(self) -> None:
        """The lock belongs to one loop: a new loop gets its own."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._lock = asyncio.Lock()

    async def drain(self) -> None:
        """Wait until every record appended so far is in the cold store, retrying its
        failures; raises StoreError if some could not be copied (the cold store was
        closed under us)."""
        self._check_open()
        await self._queue.flush()

    async def close(self, timeout_seconds: float | None = None) -> None:
        """Drain (at most `timeout_seconds`, default `close_timeout_seconds`), then close
        both stores. Records not copied by then are counted in `abandoned` and logged."""
        timeout = self.close_timeout_seconds if timeout_seconds is None else timeout_seconds
        await self._closing(lambda: self._release(seconds=timeout))

    async def _release(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            self._bind_loop()
            async with asyncio.timeout_at(deadline), self._lock:
                pass  # appends under way finish queueing first
        except TimeoutError:
            pass  # the queue's close below gives up at once, counting and logging
        finally:
            try:
                await self._queue.close(max(0.0, deadline - loop.time()))
            finally:
                try:
                    await self.hot.close()
                finally:
                    await self.cold.close()

    # -- writing --------------------------------------------------------------------

    async def append(self, records: Sequence[NodeRecord], *, fences: Fences | None = None) -> None:
        """Durable once the hot store has them; queued for the cold store after. Fences
        are checked by the hot store, which acknowledges and keeps the leases."""
        self._check_open()
        if not records:
            return
        batch = list(records)
        self._bind_loop()
        async with self._lock:  # one order for the hot store, the queue and the cold store
            if fences:
                await self._leasing().append(batch, fences=fences)
            else:
                await self.hot.append(batch)
            self._enqueue(batch)

    # -- leases: the hot store's, where writes are acknowledged ----------------------

    def _leasing(self) -> LeaseStore:
        if not isinstance(self.hot, LeaseStore):
            raise ConfigError(f"{self!r}: the hot store {self.hot!r} keeps no leases")
        return self.hot

    async def acquire_lease(
        self, execution_id: str, worker_id: str, seconds: float, *, take_over: str | None = None
    ) -> Lease:
        self._check_open()
        return await self._leasing().acquire_lease(
            execution_id, worker_id, seconds, take_over=take_over
        )

    async def renew_lease(self, lease: Lease, seconds: float) -> Lease | None:
        self._check_open()
        return await self._leasing().renew_lease(lease, seconds)

    async def release_lease(self, lease: Lease) -> None:
        self._check_open()
        await self._leasing().release_lease(lease)

    async def leases(self) -> list[Lease]:
        self._check_open()
        return await self._leasing().leases()

    # -- retention: in both stores, once the queue has drained ------------------------

    def _retaining(self) -> tuple[RetentionStore, RetentionStore]:
        hot, cold = self.hot, self.cold
        if not isinstance(hot, RetentionStore):
            raise ConfigError(f"{self!r}: the hot store {hot!r} cannot delete (no retention)")
        if not isinstance(cold, RetentionStore):
            raise ConfigError(f"{self!r}: the cold store {cold!r} cannot delete (no retention)")
        return hot, cold

    async def _in_both(self, work: Callable[[RetentionStore], Awaitable[int]]) -> int:
        """`work` on each store, with appends held back and the queue drained first: a
        record still on its way to the cold store would land there after the deletion.
        The larger count: each store holds every version, but for what the hot one has
        lost (expiry, a flush) and what the cold one refused."""
        self._check_open()
        hot, cold = self._retaining()
        self._bind_loop()
        async with self._lock:
            # A record the cold store refused is logged and counted, and in the hot one only.
            with contextlib.suppress(RecordRejectedError):
                await self._queue.flush()
            # The hot store first: a version left in the hot store alone would be copied
            # back to the cold one by resync().
            return max(await work(hot), await work(cold))

    async def delete_executions(self, execution_ids: Sequence[str]) -> int:
        self._check_open()
        ids = execution_ids_to_delete(execution_ids)
        return await self._in_both(lambda store: store.delete_executions(ids))

    async def delete_nodes(self, execution_id: str, node_ids: Sequence[str]) -> int:
        self._check_open()
        ids = node_ids_to_delete(execution_id, node_ids)
        return await self._in_both(lambda store: store.delete_nodes(execution_id, ids))

    async def drop_checkpoints(self, execution_id: str, keep: int) -> int:
        self._check_open()
        keep = check_keep(keep)
        return await self._in_both(lambda store: store.drop_checkpoints(execution_id, keep))

    def _enqueue(self, records: list[NodeRecord]) -> None:
        for record in records:
            self._queue.put(Write(record))

    async def resync(self, execution_ids: Iterable[str] | None = None) -> int:
        """Queue for the cold store every record the hot store holds and the cold store
        lacks: what a process left behind when it stopped before its queue drained. Call
        it at start-up, before saving (it holds appends back meanwhile). Default: every
        execution the hot store holds. Returns how many records it queued."""
        self._check_open()
        self._bind_loop()
        found = 0
        async with self._lock:
            ids = await self.hot.list_executions() if execution_ids is None else execution_ids
            for execution_id in ids:
                known = {
                    w.record.version_id
                    for w in self._queue.pending
                    if w.record.execution_id == execution_id
                }
                hot = await self.hot.list_versions(execution_id)
                cold = await self.cold.list_versions(execution_id)  # strict: no leaving out
                known.update(record.version_id for record in cold)
                missing = [record for record in hot if record.version_id not in known]
                if missing:
                    self._enqueue(missing)
                    found += len(missing)
        if found:
            logger.warning("%r: resync queued %d records missing from the cold store", self, found)
        return found

    # -- reading --------------------------------------------------------------------
    # The queue is read before the stores: a record that leaves it meanwhile is in the
    # cold store by then.

    def _queued(self, match: Callable[[NodeRecord], bool]) -> list[NodeRecord]:
        return [write.record for write in self._queue.pending if match(write.record)]

    async def read(self, node_id: str) -> NodeRecord | None:
        self._check_open()
        # Hot first: it has every version this store queued for cold, and also those that
        # other processes wrote since (this queue's copy of the node may be older).
        record = await self.hot.read(node_id)
        if record is None:
            queued = self._queue.latest(node_id)
            record = None if queued is None else queued.record
        if record is None:
            record = await self.cold.read(node_id)
        return record

    async def list_versions(self, execution_id: str) -> list[NodeRecord]:
        self._check_open()
        queued = self._queued(lambda r: r.execution_id == execution_id)
        hot, cold = await self._both(
            lambda: self.hot.list_versions(execution_id),
            lambda: self.cold.list_versions(execution_id),
        )
        return _merge(cold or [], queued, hot)

    async def list_nodes(self, execution_id: str) -> list[NodeRecord]:
        latest: dict[str, NodeRecord] = {}  # first-seen order, newest version
        for record in await self.list_versions(execution_id):
            latest[record.node_id] = record
        return list(latest.values())

    async def latest_checkpoint(self, execution_id: str) -> NodeRecord | None:
        """Asks both stores; when their answers and the queue leave it open which is the
        newest, it is taken from the merged version list."""
        self._check_open()
        checkpointed = self._queued(
            lambda r: r.execution_id == execution_id and r.checkpoint is not None
        )
        queued = checkpointed[-1] if checkpointed else None
        hot, cold = await self._both(
            lambda: self.hot.latest_checkpoint(execution_id),
            lambda: self.cold.latest_checkpoint(execution_id),
        )
        if hot is None:  # nothing after the queue has one; the queue is newer than cold
            return queued or cold
        if _same(hot, queued) or (queued is None and (cold is None or _same(hot, cold))):
            return hot
        versions = await self.list_versions(execution_id)
        return next((r for r in reversed(versions) if r.checkpoint is not None), None)

    async def list_executions(self) -> list[str]:
        self._check_open()
        queued = [write.record.execution_id for write in self._queue.pending]
        hot, cold = await self._both(self.hot.list_executions, self.cold.list_executions)
        return list(dict.fromkeys([*(cold or []), *queued, *hot]))

    async def usage(
        self,
        by: UsageBy,
        *,
        execution_ids: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageRow]:
        """The cold store's sums, where the whole log ends up, and the queue's on their
        way there."""
        self._check_open()
        if not isinstance(self.cold, UsageStore):
            raise ConfigError(f"{self!r}: the cold store {self.cold!r} adds no usage up")
        queued = add_up(
            (w.record for w in list(self._queue.pending)),
            check_grouping(by),
            execution_ids=execution_ids,
            since=since,
            until=until,
        )
        stored = await self.cold.usage(by, execution_ids=execution_ids, since=since, until=until)
        return merge(stored, queued)

    # -- the executions' index (tiered_index.py) ------------------------------------

    async def open_runs(self) -> list[ExecutionEntry]:
        """The runs either store or the queue holds as open, each checked against its
        newest run record: the cold store lags by the queue, the hot one may have lost
        what it held. Costs what is open, and what the cold store has not caught up on."""
        self._check_open()
        hot, cold = await self._both(
            lambda: open_runs_of(self.hot), lambda: open_runs_of(self.cold)
        )
        found = tiered_index.union(cold or [], hot)
        for write in list(self._queue.pending):
            record = write.record
            if is_run_record(record) and record.execution_id not in found:
                found[record.execution_id] = ExecutionEntry(record.execution_id, record.created_at)
        checked = [await tiered_index.checked(entry, self.read_run) for entry in found.values()]
        return sorted((e for e in checked if e.status in OPEN), key=lambda e: e.key)

    async def list_page(self, query: PageQuery) -> ExecutionPage:
        self._check_open()

        async def pages(asked: PageQuery) -> tuple[ExecutionPage, ExecutionPage | None]:
            return await self._both(
                lambda: page_of(self.hot, asked), lambda: page_of(self.cold, asked)
            )

        return await tiered_index.page(query, pages, self.read_run)

    async def read_run(self, execution_id: str) -> NodeRecord | None:
        """The newest version of the execution's run record (as `read` finds it)."""
        return await self.read(run_record_id(execution_id))

    async def history(self, node_id: str) -> list[NodeRecord]:
        self._check_open()
        queued = self._queued(lambda r: r.node_id == node_id)
        hot, cold = await self._both(
            lambda: self.hot.history(node_id), lambda: self.cold.history(node_id)
        )
        return _merge(cold or [], queued, hot)

    async def _both(
        self, hot: Callable[[], Awaitable[T]], cold: Callable[[], Awaitable[U]]
    ) -> tuple[T, U | None]:
        """Both reads at once; both finish before either's error is raised (none left
        over). A cold store that fails (down, timed out) is left out, as None, and not
        asked again for COLD_RETRY_SECONDS: reads serve what the hot store and the queue
        hold meanwhile, rather than wait for the cold store's timeout on every call."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._cold_down_until:
            return await hot(), None
        hot_result, cold_result = await asyncio.gather(hot(), cold(), return_exceptions=True)
        if isinstance(hot_result, BaseException):
            raise hot_result
        if not isinstance(cold_result, BaseException):
            return hot_result, cold_result
        if not isinstance(cold_result, StoreError) or isinstance(cold_result, StoreUnusableError):
            raise cold_result
        self._cold_down_until = loop.time() + COLD_RETRY_SECONDS
        logger.warning(
            "%r: the cold store failed (%s); reads serve the hot store and the queue "
            "for the next %gs",
            self,
            cold_result,
            COLD_RETRY_SECONDS,
        )
        return hot_result, None


def _merge(*parts: list[NodeRecord]) -> list[NodeRecord]:
    """Concatenated, each version_id kept at its first place."""
    seen: set[str] = set()
    merged = []
    for part in parts:
        for record in part:
            if record.version_id not in seen:
                seen.add(record.version_id)
                merged.append(record)
    return merged


def _same(a: NodeRecord, b: NodeRecord | None) -> bool:
    return b is not None and a.version_id == b.version_id
