"""CheckpointEngine: saves that never stall the agent and never drop a write.

A save snapshots the node, puts it in the hot cache, and queues it for the writer task,
which commits everything queued in one store transaction (group commit), in save order.
The save waits for that commit at most `overhead_budget_ms`: True means committed in
time; False means still queued, and it commits later ("late"). Nothing queued is dropped
while the process lives; store errors are retried with backoff. When the loop ends
without close() (asyncio.run returning), the writer flushes what is queued before it
stops, within `exit_flush_seconds`; anything it cannot store then is counted and logged.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import queue
import random
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Self

from ._cache import HotCache
from ._codec import Codec, decode, default_codec, encode
from ._errors import BacklogFullError, ClosedError, InvalidNodeError, StoreError
from ._histogram import Histogram
from ._model import ExecutionNode, NodeRecord, from_record, to_record
from ._store import CheckpointStore

logger = logging.getLogger("livingai")

_MiB = 1024 * 1024
# A core is left to the event loop: with as many busy threads as cores, the loop waits
# for a CPU or the GIL (measured on 2 cores: saves 8-10 ms later past the budget).
CODEC_THREADS = max(1, (os.cpu_count() or 2) - 1)


class NodeState(NamedTuple):
    """A node as loaded, with its decoded state (None when it has no checkpoint)."""

    node: ExecutionNode
    state: bytes | None


@dataclass(frozen=True)
class EngineStats:
    """Counters since the engine was created; latencies in milliseconds."""

    saves: int  # save() calls accepted
    in_budget: int  # saves that returned True: committed within the budget
    late: int  # saves that returned False and were committed afterwards
    refused: int  # saves that raised BacklogFullError (nothing queued)
    abandoned: int  # queued writes given up at exit or close(timeout); each logged
    store_errors: int  # store writes that raised; each batch is retried
    commits: int  # store transactions (group commits)
    backlog_writes: int  # queued, not yet committed
    backlog_bytes: int
    save_ms: dict[str, float]  # agent-visible latency of save()
    durable_ms: dict[str, float]  # from save() to committed
    batch_size: dict[str, float]  # writes per commit


class _Write:
    """One queued save: its record (with the blob once encoded), its state for the hot
    cache, and `ack`, which the save awaits: True when committed, False at the budget."""

    __slots__ = ("ack", "late", "record", "size", "started", "state")

    def __init__(
        self, record: NodeRecord, state: bytes | None, ack: asyncio.Future[bool] | None
    ) -> None:
        self.record = record
        self.state = state
        self.ack = ack
        # What the queue holds: the state, then its blob (at most about the state's size).
        self.size = record.size + (len(state) if state is not None else 0)
        self.started = time.perf_counter()
        self.late = False

    @property
    def ready(self) -> bool:
        return self.state is None or self.record.checkpoint is not None


class _Encoder:
    """Codec threads: each takes a queued write, sets its blob, and says so. A write
    encoded twice (here and at exit) gets the same bytes."""

    def __init__(self, codec: Codec, encoded: Callable[[], None]) -> None:
        self.codec = codec
        self._encoded = encoded
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"livingai-codec-{n}", daemon=True)
            for n in range(CODEC_THREADS)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, write: _Write) -> None:
        self._queue.put(write)

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _serve(self) -> None:
        while (write := self._queue.get()) is not None:
            if write.ready or write.state is None:
                continue
            try:
                blob = encode(write.state, self.codec)
            except Exception:  # never leave a write unready: that would stall the queue
                logger.exception(
                    "%s failed; storing node %s uncompressed", self.codec.name, write.record.node_id
                )
                blob = encode(write.state, Codec.NONE)
            write.record = _with_blob(write.record, blob)
            self._encoded()


_live_engines: weakref.WeakSet[CheckpointEngine] = weakref.WeakSet()


class CheckpointEngine:
    """Checkpoints agent steps into a store without stalling the agent."""

    def __init__(
        self,
        store: CheckpointStore,
        *,
        overhead_budget_ms: float = 50.0,
        codec: Codec | None = None,
        hot_capacity: int = 1024,
        hot_max_bytes: int = 256 * _MiB,
        hot_ttl_seconds: float = 3600.0,
        max_backlog_bytes: int = 2048 * _MiB,
        max_batch_bytes: int = 4 * _MiB,
        offload_bytes: int = 16 * 1024,
        retry_max_delay_seconds: float = 2.0,
        exit_flush_seconds: float = 10.0,
    ) -> None:
        if overhead_budget_ms <= 0:
            raise ValueError(f"overhead_budget_ms must be > 0; got {overhead_budget_ms}")
        self.store = store
        self.overhead_budget_ms = overhead_budget_ms
        self.codec = default_codec() if codec is None else Codec(codec)
        if self.codec is Codec.ZSTD:
            encode(b"", Codec.ZSTD)  # fail now, naming the extra, not at the first save
        self.max_backlog_bytes = max_backlog_bytes
        self.max_batch_bytes = max_batch_bytes
        self.offload_bytes = offload_bytes
        self.retry_max_delay_seconds = retry_max_delay_seconds
        self.exit_flush_seconds = exit_flush_seconds
        self._hot: HotCache[_Write] = HotCache(hot_capacity, hot_max_bytes, hot_ttl_seconds)
        self._pending: deque[_Write] = deque()
        self._queued_total = 0  # writes ever queued; commits keep save order, so
        self._committed_total = 0  # flush() waits until committed catches up
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._backlog_bytes = 0
        self._encoder: _Encoder | None = None
        self._encode_signalled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._closed = False
        self._counts = dict.fromkeys(
            ("saves", "in_budget", "late", "refused", "abandoned", "store_errors", "commits"), 0
        )
        self._save_ms = Histogram()
        self._durable_ms = Histogram()
        self._batch_size = Histogram()
        _live_engines.add(self)

    def __repr__(self) -> str:
        return f"CheckpointEngine({self.store!r})"

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"{self!r} was used after close()")

    def _start_writer(self) -> None:
        """Bind to the running loop and start the writer task there, once per loop."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._writer is not None and not self._writer.done():
            return
        if self._pending and self._loop is not None and self._loop is not loop:
            raise RuntimeError(
                f"{self!r} has {len(self._pending)} writes queued on another event loop; "
                "call flush() there first"
            )
        self._loop = loop
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._writer = loop.create_task(self._write_loop(), name="livingai-writer")

    async def flush(self) -> None:
        """Wait until every write queued so far is committed (retrying store errors);
        raises StoreError if any of them had to be abandoned."""
        if self._committed_total >= self._queued_total:
            return
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._flush_waiters.append((self._queued_total, waiter))
        await asyncio.shield(waiter)

    async def close(self, abandon_after_seconds: float | None = None) -> None:
        """Flush, stop the writer and close the store. With `abandon_after_seconds`, writes
        still queued after that long (a store that stays down) are counted, logged, dropped."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._pending:
                self._start_writer()
                await asyncio.wait_for(self.flush(), abandon_after_seconds)
        except TimeoutError:
            self._abandon(f"close() gave up after {abandon_after_seconds}s")
        finally:
            await self._stop_writer()
            if self._encoder is not None:
                self._encoder.stop()
            await self.store.close()

    def __del__(self) -> None:
        if getattr(self, "_pending", None) and not self._closed:
            warnings.warn(
                f"{self!r} was collected with {len(self._pending)} writes not committed; "
                "use `async with` or await close()",
                ResourceWarning,
                stacklevel=1,
            )

    # -- saving ---------------------------------------------------------------------

    async def save(self, node: ExecutionNode, state: bytes | None = None) -> bool:
        """Checkpoint `node` (and `state`, if given). True when committed within the budget;
        False when still queued: it commits later and is never dropped."""
        start = time.perf_counter()
        deadline = start + self.overhead_budget_ms / 1000.0
        self._check_open()
        self._start_writer()
        if state is not None:
            if not isinstance(state, bytes | bytearray | memoryview):
                raise InvalidNodeError(
                    f"node {node.id}: state must be bytes; got {type(state).__name__}"
                )
            record = to_record(node, None)
            state = bytes(state)
        else:
            record = to_record(node, node.checkpoint)
            if node.checkpoint is not None:
                _check_framed(node.id, node.checkpoint)
        loop = self._loop
        assert loop is not None
        ack: asyncio.Future[bool] = loop.create_future()
        write = _Write(record, state, ack)
        if self._backlog_bytes + write.size > self.max_backlog_bytes:
            await self._wait_for_room(write, deadline)
        self._counts["saves"] += 1
        self._hot.put(record.node_id, write, write.size + len(state or b""))  # state + blob
        self._pending.append(write)
        self._queued_total += 1
        self._backlog_bytes += write.size
        if state is not None:
            if len(state) < self.offload_bytes:
                write.record = _with_blob(record, encode(state, self.codec))
            else:
                # Large states are compressed on a thread (zlib and zstd release the GIL),
                # so the event loop keeps running other agents meanwhile.
                if self._encoder is None:
                    self._encoder = _Encoder(self.codec, self._encoded_elsewhere)
                self._encoder.submit(write)
        if write.ready:
            self._wake.set()
        timer = loop.call_at(loop.time() + max(0.0, deadline - time.perf_counter()), _expire, ack)
        try:
            committed = await ack  # StoreError if the write had to be abandoned
        finally:
            timer.cancel()
            self._save_ms.record((time.perf_counter() - start) * 1000.0)
        if committed:
            self._counts["in_budget"] += 1
        else:
            write.late = True
        return committed

    async def _wait_for_room(self, write: _Write, deadline: float) -> None:
        while self._backlog_bytes + write.size > self.max_backlog_bytes and self._pending:
            self._room.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self._counts["refused"] += 1
                logger.error(
                    "%r refused a save of node %s: the write backlog holds %d bytes "
                    "(max_backlog_bytes=%d) and did not drain within the budget",
                    self,
                    write.record.node_id,
                    self._backlog_bytes,
                    self.max_backlog_bytes,
                )
                raise BacklogFullError(
                    f"save of node {write.record.node_id} refused: {self._backlog_bytes} bytes "
                    f"of writes are queued (max_backlog_bytes={self.max_backlog_bytes}) and the "
                    f"store {self.store!r} is not keeping up; nothing was stored"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), remaining)

    def _encoded_elsewhere(self) -> None:
        """Called on a codec thread after it encoded a write: wake the writer, once per
        burst of encodes rather than once per write."""
        loop = self._loop
        if self._encode_signalled or loop is None or loop.is_closed():
            return
        self._encode_signalled = True
        with contextlib.suppress(RuntimeError):  # the loop closed in between
            loop.call_soon_threadsafe(self._on_encoded)

    def _on_encoded(self) -> None:
        self._encode_signalled = False
        self._wake.set()

    def _encode_now(self, writes: Iterable[_Write]) -> None:
        """At exit the codec threads may be gone: encode what is left on this thread."""
        for write in writes:
            if not write.ready:
                assert write.state is not None
                write.record = _with_blob(write.record, encode(write.state, self.codec))

    # -- the writer -----------------------------------------------------------------

    def _next_batch(self) -> list[_Write]:
        """The longest prefix of ready writes within max_batch_bytes (at least one)."""
        batch: list[_Write] = []
        size = 0
        for write in self._pending:
            if not write.ready or (batch and size + write.size > self.max_batch_bytes):
                break
            batch.append(write)
            size += write.size
        return batch

    async def _write_loop(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if not batch:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._commit(batch, retry=True)
        except ClosedError as exc:  # the store was closed under us: nothing can land now
            self._abandon(str(exc))
        except asyncio.CancelledError:
            # The loop is shutting down (asyncio.run returned without close()):
            # commit what is queued before the process goes, within a bound.
            if self._pending and not self._closed:
                await self._flush_at_exit()
            raise

    async def _commit(self, batch: list[_Write], *, retry: bool) -> None:
        records = [write.record for write in batch]
        failures = 0
        while True:
            try:
                await self.store.append(records)
                break
            except ClosedError:
                raise
            except Exception as exc:
                self._counts["store_errors"] += 1
                failures += 1
                if not retry:
                    raise
                delay = backoff_seconds(failures, self.retry_max_delay_seconds)
                if failures == 1 or failures % 10 == 0:
                    logger.warning(
                        "%r: store write of %d node versions failed (attempt %d, %d queued), "
                        "retrying in %.2fs: %s",
                        self,
                        len(records),
                        failures,
                        len(self._pending),
                        delay,
                        exc,
                    )
                await asyncio.sleep(delay)
        if failures:
            logger.warning("%r: store write succeeded after %d failures", self, failures)
        now = time.perf_counter()
        for write in batch:
            self._pending.popleft()
            self._backlog_bytes -= write.size
            self._durable_ms.record((now - write.started) * 1000.0)
            if write.late:
                self._counts["late"] += 1
            _resolve(write.ack, True)
        self._committed_total += len(batch)
        self._release_flushes(None)
        self._counts["commits"] += 1
        self._batch_size.record(len(batch))
        self._room.set()

    async def _flush_at_exit(self) -> None:
        """Commit everything queued, encoding inline; give up after exit_flush_seconds."""
        try:
            async with asyncio.timeout(self.exit_flush_seconds):
                self._encode_now(self._pending)
                while self._pending:
                    await self._commit(self._next_batch(), retry=True)
        except Exception as exc:  # includes the timeout
            self._abandon(f"exit flush failed: {exc!r}")

    async def _stop_writer(self) -> None:
        """Cancel the writer task; with writes queued (not at close()), its cancellation
        handler flushes them. Only ever one task commits: two would pop each other's writes."""
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if self._pending and not self._closed:  # no writer, or cancelled before it started
            await self._flush_at_exit()

    def _abandon(self, why: str) -> None:
        if not self._pending:
            return
        count = len(self._pending)
        self._counts["abandoned"] += count
        logger.error(
            "%r: %d queued writes were NOT stored (%s); nodes: %s",
            self,
            count,
            why,
            ", ".join(w.record.node_id for w in list(self._pending)[:20]),
        )
        error = StoreError(f"{count} queued writes were abandoned: {why}")
        for write in self._pending:
            _resolve(write.ack, error)
        self._pending.clear()
        self._backlog_bytes = 0
        self._committed_total = self._queued_total
        self._release_flushes(error)

    def _release_flushes(self, error: StoreError | None) -> None:
        waiting = []
        for target, waiter in self._flush_waiters:
            if target <= self._committed_total:
                _resolve(waiter, error)
            else:
                waiting.append((target, waiter))
        self._flush_waiters = waiting

    # -- reading --------------------------------------------------------------------

    async def _decode(self, record: NodeRecord) -> bytes | None:
        blob = record.checkpoint
        if blob is None:
            return None
        if len(blob) < self.offload_bytes:
            return decode(blob, record.node_id)
        return await asyncio.get_running_loop().run_in_executor(None, decode, blob, record.node_id)

    async def load(self, node_id: str) -> NodeState | None:
        """The latest version of a node and its state: hot cache, then queue, then store."""
        self._check_open()
        write = self._hot.get(node_id) or self._queued(lambda w: w.record.node_id == node_id)
        if write is not None:
            return await self._state_of(write)
        record = await self.store.read(node_id)
        if record is None:
            return None
        return await self._loaded(record)

    async def _state_of(self, write: _Write) -> NodeState:
        state = write.state
        if state is None:
            state = await self._decode(write.record)
        return NodeState(from_record(write.record), state)

    async def _loaded(self, record: NodeRecord) -> NodeState:
        state = await self._decode(record)
        cached = _Write(record, state, None)
        self._hot.put(record.node_id, cached, cached.size)
        return NodeState(from_record(record), state)

    async def latest(self, execution_id: str) -> NodeState | None:
        """The most recent checkpoint of an execution, including writes still queued."""
        self._check_open()
        write = self._queued(
            lambda w: (
                w.record.execution_id == execution_id
                and (w.state is not None or w.record.checkpoint is not None)
            )
        )
        if write is not None:
            return await self._state_of(write)
        record = await self.store.latest_checkpoint(execution_id)
        return None if record is None else await self._loaded(record)

    def _queued(self, match: Callable[[_Write], bool]) -> _Write | None:
        for write in reversed(self._pending):
            if match(write):
                return write
        return None

    async def list_nodes(self, execution_id: str) -> list[ExecutionNode]:
        """Latest version of each node of an execution in first-seen order, queued included."""
        self._check_open()
        records = await self.store.list_nodes(execution_id)
        position = {record.node_id: i for i, record in enumerate(records)}
        for write in list(self._pending):
            if write.record.execution_id == execution_id:
                index = position.setdefault(write.record.node_id, len(records))
                if index == len(records):
                    records.append(write.record)
                else:
                    records[index] = write.record
        return [from_record(record) for record in records]

    async def _versions(self, execution_id: str) -> list[NodeRecord]:
        """Every version of an execution in save order, queued ones included and encoded."""
        records = await self.store.list_versions(execution_id)
        queued = [w for w in list(self._pending) if w.record.execution_id == execution_id]
        self._encode_now(queued)
        stored = {record.version_id for record in records}
        records.extend(w.record for w in queued if w.record.version_id not in stored)
        return records

    async def list_executions(self) -> list[str]:
        self._check_open()
        stored = await self.store.list_executions()
        queued = (w.record.execution_id for w in list(self._pending))
        return list(dict.fromkeys([*stored, *queued]))

    async def history(self, node_id: str) -> list[ExecutionNode]:
        """Every committed version of a node, oldest first."""
        self._check_open()
        return [from_record(record) for record in await self.store.history(node_id)]

    def stats(self) -> EngineStats:
        return EngineStats(
            **self._counts,
            backlog_writes=len(self._pending),
            backlog_bytes=self._backlog_bytes,
            save_ms=self._save_ms.summary(),
            durable_ms=self._durable_ms.summary(),
            batch_size=self._batch_size.summary(),
        )


def backoff_seconds(failures: int, cap: float) -> float:
    """Delay before retry number `failures`: 50 ms doubling up to `cap`, with 20% jitter.
    The exponent is bounded: a store down for hours must not overflow a float."""
    return min(0.05 * 2.0 ** min(failures - 1, 16), cap) * random.uniform(0.8, 1.2)


def _expire(ack: asyncio.Future[bool]) -> None:
    """The budget ran out: the save returns False; its write stays queued."""
    if not ack.done():
        ack.set_result(False)


def _resolve(future: asyncio.Future[Any] | None, outcome: object) -> None:
    """Settle a future unless it is settled, cancelled, or its loop is gone (at exit)."""
    if future is None or future.done() or future.get_loop().is_closed():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
        future.exception()  # marked retrieved: whoever abandoned it logged it
    else:
        future.set_result(outcome)


def _with_blob(record: NodeRecord, blob: bytes) -> NodeRecord:
    """dataclasses.replace, without its introspection on the save path."""
    return NodeRecord(
        record.version_id,
        record.node_id,
        record.execution_id,
        record.parent_id,
        record.type,
        record.status,
        record.created_at,
        record.completed_at,
        record.body,
        blob,
    )


def _check_framed(node_id: str, blob: bytes) -> None:
    if not isinstance(blob, bytes) or not blob or blob[0] not in set(Codec):
        raise InvalidNodeError(
            f"node {node_id}: checkpoint must be a blob framed by a livingai codec; "
            "pass the raw state as save(node, state=...) instead"
        )


@atexit.register
def _flush_engines_at_exit() -> None:
    """A loop stopped without cancelling its tasks leaves writes queued: store them now,
    within exit_flush_seconds, or count and log them. Never silent."""
    for engine in list(_live_engines):
        if not engine._pending or engine._closed:
            continue
        try:
            loop = engine._loop
            if loop is not None and not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(engine._stop_writer())
            else:
                asyncio.run(engine._flush_at_exit())
        except Exception as exc:
            engine._abandon(f"exit flush failed: {exc!r}")
        engine._abandon("the process exited before they were stored")
