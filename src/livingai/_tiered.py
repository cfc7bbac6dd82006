"""TieredStore: a fast hot store in front of a durable cold one (Redis over PostgreSQL).

What is durable when. `append` returns once the HOT store holds the records: that is the
acknowledgement the engine waits for. The records are then queued in this process and
copied to the COLD store behind it by a background task: in append order, in batches (one
cold append per `batch_bytes`, or for whatever has waited `flush_interval_seconds`),
retried with backoff until they land. `pending_cold` counts what is not copied yet.

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

Reads. The cold store holds the oldest part of the log, this process's queue the records
on their way there, the hot store the recent part (everything, or only what was written
since it lost data: a flush, a restart, expiry). Lists are merged in that order, without
duplicates by version_id; `read` takes the queue, then the hot store, then the cold one.
So once the queue is drained, every execution is complete from the cold store alone.
Appends go through one lock, so the hot store, the queue and the cold store all hold the
same order.

Stopping. `close()` drains the queue (within `close_timeout_seconds`), then closes both
stores; what it could not copy is counted in `abandoned` and logged, and stays in the hot
store only. A loop that ends without close() gets the same bounded drain. After a process
died with records queued, those are in the hot store only: `resync()` at start-up, before
saving, queues them for the cold store again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from ._engine import backoff_seconds
from ._errors import ClosedError, StoreError
from ._model import NodeRecord
from ._store import CheckpointStore

logger = logging.getLogger("livingai")

T = TypeVar("T")
U = TypeVar("U")

_MiB = 1024 * 1024


class TieredStore:
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
        if batch_bytes <= 0:
            raise ValueError(f"batch_bytes must be > 0; got {batch_bytes}")
        if flush_interval_seconds < 0:
            raise ValueError(f"flush_interval_seconds must be >= 0; got {flush_interval_seconds}")
        if retry_max_delay_seconds <= 0:
            raise ValueError(f"retry_max_delay_seconds must be > 0; got {retry_max_delay_seconds}")
        if close_timeout_seconds < 0:
            raise ValueError(f"close_timeout_seconds must be >= 0; got {close_timeout_seconds}")
        self.hot = hot
        self.cold = cold
        self.batch_bytes = batch_bytes
        self.flush_interval_seconds = flush_interval_seconds
        self.retry_max_delay_seconds = retry_max_delay_seconds
        self.close_timeout_seconds = close_timeout_seconds
        self._queue: deque[tuple[float, NodeRecord]] = deque()  # (monotonic time queued, record)
        self._queued_bytes = 0
        self._latest_queued: dict[str, NodeRecord] = {}  # node id -> its newest queued version
        self._enqueued = 0  # records ever queued; drain() waits until as many left the queue
        self._drain_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._counts = dict.fromkeys(("moved", "cold_batches", "cold_failures", "abandoned"), 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._mover: asyncio.Task[None] | None = None
        self._mover_error: ClosedError | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"TieredStore(hot={self.hot!r}, cold={self.cold!r})"

    # -- statistics -----------------------------------------------------------------

    @property
    def pending_cold(self) -> int:
        """Records acknowledged (in the hot store) and not yet copied to the cold store."""
        return len(self._queue)

    @property
    def pending_cold_bytes(self) -> int:
        return self._queued_bytes

    @property
    def moved(self) -> int:
        """Records copied to the cold store."""
        return self._counts["moved"]

    @property
    def cold_batches(self) -> int:
        """Successful cold appends, each one batch."""
        return self._counts["cold_batches"]

    @property
    def cold_failures(self) -> int:
        """Cold appends that raised; each batch is retried until it lands."""
        return self._counts["cold_failures"]

    @property
    def abandoned(self) -> int:
        """Records close() gave up copying; each logged. They are in the hot store only."""
        return self._counts["abandoned"]

    # -- lifecycle ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"{self!r} was used after close()")

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        """The lock, the event and the mover belong to one loop: a new loop gets its own."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._lock = asyncio.Lock()
            self._wake = asyncio.Event()
            self._mover = None
            self._drain_waiters = []
        return loop

    def _start_mover(self) -> None:
        mover = self._mover
        # Running, or cancelled by the loop shutting down: never start a second one.
        if mover is not None and (not mover.done() or mover.cancelled()):
            return
        if self._mover_error is None and self._loop is not None:
            self._mover = self._loop.create_task(self._run_mover(), name="livingai-tiered-mover")

    async def drain(self) -> None:
        """Wait until every record appended so far is in the cold store, retrying its
        failures; raises StoreError if the cold store was closed under us."""
        self._check_open()
        await self._drain()

    async def _drain(self) -> None:
        target = self._enqueued
        if self._left_queue() >= target:
            return
        if self._mover_error is not None:
            raise self._stuck(self._mover_error)
        waiter = self._bind_loop().create_future()
        self._drain_waiters.append((target, waiter))
        self._start_mover()
        self._wake.set()  # a drain does not wait for the flush interval
        await waiter

    async def close(self, timeout_seconds: float | None = None) -> None:
        """Drain (at most `timeout_seconds`, default `close_timeout_seconds`), then close
        both stores. Records not copied by then are counted in `abandoned` and logged."""
        if self._closed:
            return
        self._closed = True
        timeout = self.close_timeout_seconds if timeout_seconds is None else timeout_seconds
        why = "close() was interrupted"
        try:
            self._bind_loop()
            async with asyncio.timeout(timeout):
                async with self._lock:  # appends under way finish queueing first
                    pass
                await self._drain()
        except TimeoutError:
            why = f"close() gave up after {timeout}s"
        except StoreError as exc:
            why = str(exc)
        finally:
            await self._stop_mover()
            self._abandon(why)
            try:
                await self.hot.close()
            finally:
                await self.cold.close()

    async def _stop_mover(self) -> None:
        mover, self._mover = self._mover, None
        if mover is not None and not mover.done():
            mover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mover

    def _abandon(self, why: str) -> None:
        if not self._queue:
            return
        count = len(self._queue)
        self._counts["abandoned"] += count
        logger.error(
            "%r: %d records were NOT copied to the cold store (%s); they are in the hot "
            "store only; nodes: %s",
            self,
            count,
            why,
            ", ".join(dict.fromkeys(record.node_id for _, record in list(self._queue)[:20])),
        )
        self._queue.clear()
        self._queued_bytes = 0
        self._latest_queued.clear()
        self._release_drains(StoreError(f"{count} records were not copied to the cold store"))

    def __del__(self) -> None:
        if getattr(self, "_queue", None) and not self._closed:
            warnings.warn(
                f"{self!r} was collected with {len(self._queue)} records not copied to the "
                "cold store; await close()",
                ResourceWarning,
                stacklevel=1,
            )

    # -- writing --------------------------------------------------------------------

    async def append(self, records: Sequence[NodeRecord]) -> None:
        """Durable once the hot store has them; queued for the cold store after."""
        self._check_open()
        if not records:
            return
        batch = list(records)
        self._bind_loop()
        async with self._lock:  # one order for the hot store, the queue and the cold store
            await self.hot.append(batch)
            self._enqueue(batch)
        self._start_mover()

    def _enqueue(self, records: list[NodeRecord]) -> None:
        now = time.monotonic()
        was_empty = not self._queue
        for record in records:
            self._queue.append((now, record))
            self._queued_bytes += record.size
            self._latest_queued[record.node_id] = record
        self._enqueued += len(records)
        if was_empty or self._queued_bytes >= self.batch_bytes:
            self._wake.set()

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
                known = {r.version_id for _, r in self._queue if r.execution_id == execution_id}
                hot, cold = await _both(
                    self.hot.list_versions(execution_id), self.cold.list_versions(execution_id)
                )
                known.update(record.version_id for record in cold)
                missing = [record for record in hot if record.version_id not in known]
                if missing:
                    self._enqueue(missing)
                    found += len(missing)
        if found:
            logger.warning("%r: resync queued %d records missing from the cold store", self, found)
            self._start_mover()
        return found

    # -- the mover ------------------------------------------------------------------

    async def _run_mover(self) -> None:
        try:
            while True:
                await self._batch_due()
                await self._move(self._next_batch())
        except ClosedError as exc:  # the cold store was closed under us: nothing lands now
            self._mover_error = exc
            logger.error(
                "%r: the cold store refused writes (%s); %d records are in the hot store only",
                self,
                exc,
                len(self._queue),
            )
            self._release_drains(self._stuck(exc))
        except asyncio.CancelledError:
            if self._queue and not self._closed:  # the loop is ending without close()
                await self._move_at_exit()
            raise

    async def _batch_due(self) -> None:
        """Return once a batch is due: `batch_bytes` queued, the oldest record queued for
        `flush_interval_seconds`, or a drain waiting."""
        while True:
            timeout: float | None = None
            if self._queue:
                if self._drain_waiters or self._queued_bytes >= self.batch_bytes:
                    return
                oldest = self._queue[0][0]
                timeout = oldest + self.flush_interval_seconds - time.monotonic()
                if timeout <= 0:
                    return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _next_batch(self) -> list[NodeRecord]:
        """The longest prefix of the queue within batch_bytes (at least one record)."""
        batch: list[NodeRecord] = []
        size = 0
        for _, record in self._queue:
            if batch and size + record.size > self.batch_bytes:
                break
            batch.append(record)
            size += record.size
        return batch

    async def _move(self, batch: list[NodeRecord]) -> None:
        """Append `batch` (the head of the queue) to the cold store until it lands, then
        take it off the queue. A retry after a lost acknowledgement is harmless: the cold
        store skips version ids it holds."""
        failures = 0
        while True:
            try:
                await self.cold.append(batch)
                break
            except ClosedError:
                raise
            except Exception as exc:
                failures += 1
                self._counts["cold_failures"] += 1
                delay = backoff_seconds(failures, self.retry_max_delay_seconds)
                if failures == 1 or failures % 10 == 0:
                    logger.warning(
                        "%r: cold append of %d records failed (attempt %d, %d queued), "
                        "retrying in %.2fs: %s",
                        self,
                        len(batch),
                        failures,
                        len(self._queue),
                        delay,
                        exc,
                    )
                await asyncio.sleep(delay)
        if failures:
            logger.warning("%r: cold append succeeded after %d failures", self, failures)
        for _ in batch:
            _, record = self._queue.popleft()
            self._queued_bytes -= record.size
            if self._latest_queued.get(record.node_id) is record:
                del self._latest_queued[record.node_id]
        self._counts["moved"] += len(batch)
        self._counts["cold_batches"] += 1
        self._release_drains(None)

    async def _move_at_exit(self) -> None:
        """The loop is shutting down without close(): copy what is queued, within bounds.
        What is left stays queued, in case this store is used on another loop."""
        try:
            async with asyncio.timeout(self.close_timeout_seconds):
                while self._queue:
                    await self._move(self._next_batch())
        except Exception as exc:  # the timeout too
            logger.error(
                "%r: %d records were not copied to the cold store before the loop ended "
                "(%r); they are in the hot store only: resync() copies them",
                self,
                len(self._queue),
                exc,
            )

    def _left_queue(self) -> int:
        return self._enqueued - len(self._queue)

    def _release_drains(self, error: StoreError | None) -> None:
        waiting = []
        for target, waiter in self._drain_waiters:
            if waiter.done():
                continue
            if error is not None:
                waiter.set_exception(error)
            elif target <= self._left_queue():
                waiter.set_result(None)
            else:
                waiting.append((target, waiter))
        self._drain_waiters = waiting

    def _stuck(self, exc: ClosedError) -> StoreError:
        return StoreError(
            f"{self!r}: {len(self._queue)} records cannot be copied to the cold store, "
            f"which was closed ({exc})"
        )

    # -- reading --------------------------------------------------------------------
    # The queue is read before the stores: a record that leaves it meanwhile is in the
    # cold store by then.

    def _queued(self, match: Callable[[NodeRecord], bool]) -> list[NodeRecord]:
        return [record for _, record in self._queue if match(record)]

    async def read(self, node_id: str) -> NodeRecord | None:
        self._check_open()
        record = self._latest_queued.get(node_id)
        if record is None:
            record = await self.hot.read(node_id)
        if record is None:
            record = await self.cold.read(node_id)
        return record

    async def list_versions(self, execution_id: str) -> list[NodeRecord]:
        self._check_open()
        queued = self._queued(lambda r: r.execution_id == execution_id)
        hot, cold = await _both(
            self.hot.list_versions(execution_id), self.cold.list_versions(execution_id)
        )
        return _merge(cold, queued, hot)

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
        hot, cold = await _both(
            self.hot.latest_checkpoint(execution_id), self.cold.latest_checkpoint(execution_id)
        )
        if hot is None:  # nothing after the queue has one; the queue is newer than cold
            return queued or cold
        if _same(hot, queued) or (queued is None and (cold is None or _same(hot, cold))):
            return hot
        versions = await self.list_versions(execution_id)
        return next((r for r in reversed(versions) if r.checkpoint is not None), None)

    async def list_executions(self) -> list[str]:
        self._check_open()
        queued = [record.execution_id for _, record in self._queue]
        hot, cold = await _both(self.hot.list_executions(), self.cold.list_executions())
        return list(dict.fromkeys([*cold, *queued, *hot]))

    async def history(self, node_id: str) -> list[NodeRecord]:
        self._check_open()
        queued = self._queued(lambda r: r.node_id == node_id)
        hot, cold = await _both(self.hot.history(node_id), self.cold.history(node_id))
        return _merge(cold, queued, hot)


async def _both(hot: Awaitable[T], cold: Awaitable[U]) -> tuple[T, U]:
    """Both reads at once; both finish before either's error is raised (none left over)."""
    hot_result, cold_result = await asyncio.gather(hot, cold, return_exceptions=True)
    if isinstance(hot_result, BaseException):
        raise hot_result
    if isinstance(cold_result, BaseException):
        raise cold_result
    return hot_result, cold_result


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
