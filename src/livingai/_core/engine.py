"""CheckpointEngine: saves that never stall the agent and never drop a write.

A save snapshots the node, puts it in the hot cache, and queues it on the commit queue,
whose task commits everything queued in one store transaction (group commit), in save
order. The save waits for that commit at most `overhead_budget_ms`: True means committed
in time; False means still queued, and it commits later ("late"). Nothing queued is
dropped while the process lives; store errors are retried with backoff; what cannot be
stored at exit or after close(abandon_after_seconds=...) is counted and logged (see
commits.py). Large states are compressed on codec threads, so the loop keeps serving
the other agents meanwhile.

The public methods below are the engine's whole interface for the layers above it
(recovery, durable runs, replay, adapters): they never need its private members.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from .cache import HotCache
from .codec import Codec, decode, default_codec, encode
from .commits import CommitQueue, Write
from .errors import BacklogFullError, ConfigError, InvalidNodeError, check_setting
from .histogram import Histogram
from .lifecycle import Closable
from .model import ExecutionNode, NodeRecord
from .store import CheckpointStore

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


class _Encoder:
    """Codec threads: each takes a queued write, sets its blob, and says so. A write
    encoded twice (here and at exit) gets the same bytes."""

    def __init__(self, codec: Codec, encoded: Callable[[], None]) -> None:
        self.codec = codec
        self._encoded = encoded
        self._queue: queue.SimpleQueue[Write | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"livingai-codec-{n}", daemon=True)
            for n in range(CODEC_THREADS)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, write: Write) -> None:
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
            write.record = write.record.with_checkpoint(blob)
            self._encoded()


class CheckpointEngine(Closable):
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
        check_setting("overhead_budget_ms", overhead_budget_ms, minimum=0, inclusive=False)
        check_setting("hot_capacity", hot_capacity, minimum=0, whole=True)
        check_setting("hot_max_bytes", hot_max_bytes, minimum=0, whole=True)
        check_setting("hot_ttl_seconds", hot_ttl_seconds, minimum=0, inclusive=False)
        check_setting("max_backlog_bytes", max_backlog_bytes, minimum=1, whole=True)
        check_setting("max_batch_bytes", max_batch_bytes, minimum=1, whole=True)
        check_setting("offload_bytes", offload_bytes, minimum=0, whole=True)
        check_setting(
            "retry_max_delay_seconds", retry_max_delay_seconds, minimum=0, inclusive=False
        )
        check_setting("exit_flush_seconds", exit_flush_seconds, minimum=0)
        try:
            self.codec = default_codec() if codec is None else Codec(codec)
        except ValueError:
            allowed = ", ".join(c.name for c in Codec)
            raise ConfigError(f"codec must be one of {allowed}; got {codec!r}") from None
        if self.codec is Codec.ZSTD:
            encode(b"", Codec.ZSTD)  # fail now, naming the extra, not at the first save
        self.store = store
        self.overhead_budget_ms = overhead_budget_ms
        self.max_backlog_bytes = max_backlog_bytes
        self.offload_bytes = offload_bytes
        self._hot: HotCache[Write] = HotCache(hot_capacity, hot_max_bytes, hot_ttl_seconds)
        self._queue = CommitQueue(
            self,
            store.append,
            what="store write",
            lost="queued writes were NOT stored",
            max_batch_bytes=max_batch_bytes,
            retry_max_delay_seconds=retry_max_delay_seconds,
            exit_flush_seconds=exit_flush_seconds,
            prepare=self._encode_now,
            on_commit=self._committed,
        )
        self._encoder: _Encoder | None = None
        self._encode_signalled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room = asyncio.Event()  # set by every commit: a full backlog has room again
        self._counts = dict.fromkeys(("saves", "in_budget", "late", "refused"), 0)
        self._save_ms = Histogram()
        self._durable_ms = Histogram()
        self._batch_size = Histogram()
        self._closed = False

    def __repr__(self) -> str:
        return f"CheckpointEngine({self.store!r})"

    # -- lifecycle ------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every write queued so far is committed (retrying store errors);
        raises StoreError if any of them had to be abandoned."""
        await self._queue.flush()

    async def close(self, abandon_after_seconds: float | None = None) -> None:
        """Flush, stop the writer and close the store. With `abandon_after_seconds`, writes
        still queued after that long (a store that stays down) are counted, logged, dropped."""
        if not self._begin_close():
            return
        try:
            await self._queue.close(abandon_after_seconds)
        finally:
            if self._encoder is not None:
                self._encoder.stop()
            await self.store.close()

    # -- saving ---------------------------------------------------------------------

    async def save(
        self, node: ExecutionNode, state: bytes | None = None, *, durable: bool = False
    ) -> bool:
        """Checkpoint `node` (and `state`, if given). True when committed within the budget;
        False when still queued: it commits later and is never dropped. With `durable`,
        wait for the commit however long the store takes (the budget does not apply):
        for what must be on disk before the agent goes on, such as a tool's intent.
        StoreError if the write had to be abandoned."""
        start = time.perf_counter()
        deadline = start + self.overhead_budget_ms / 1000.0
        self._check_open()
        if state is not None:
            if not isinstance(state, bytes | bytearray | memoryview):
                raise InvalidNodeError(
                    f"node {node.id}: state must be bytes; got {type(state).__name__}"
                )
            record = NodeRecord.from_node(node)
            state = bytes(state)
        else:
            record = NodeRecord.from_node(node, node.checkpoint)
            if node.checkpoint is not None:
                _check_framed(node.id, node.checkpoint)
        loop = asyncio.get_running_loop()
        self._queue.start()  # raises if writes are queued on another loop
        if loop is not self._loop:
            self._loop = loop
            self._room = asyncio.Event()
        ack: asyncio.Future[bool] = loop.create_future()
        write = Write(record, state, ack)
        if self._queue.bytes + write.size > self.max_backlog_bytes:
            await self._wait_for_room(write, deadline)
        self._counts["saves"] += 1
        self._hot.put(record.node_id, write, write.size + len(state or b""))  # state + blob
        if state is not None and len(state) < self.offload_bytes:
            write.record = record.with_checkpoint(encode(state, self.codec))
        self._queue.put(write)
        if not write.ready:
            # Large states are compressed on a thread (zlib and zstd release the GIL),
            # so the event loop keeps running other agents meanwhile.
            if self._encoder is None:
                self._encoder = _Encoder(self.codec, self._encoded_elsewhere)
            self._encoder.submit(write)
        timer = None
        if not durable:
            remaining = max(0.0, deadline - time.perf_counter())
            timer = loop.call_at(loop.time() + remaining, _expire, ack)
        try:
            committed = await ack  # StoreError if the write had to be abandoned
        finally:
            if timer is not None:
                timer.cancel()
            self._save_ms.record((time.perf_counter() - start) * 1000.0)
        if committed:
            self._counts["in_budget"] += 1
        else:
            write.late = True
        return committed

    async def _wait_for_room(self, write: Write, deadline: float) -> None:
        while self._queue.bytes + write.size > self.max_backlog_bytes and self._queue.pending:
            self._room.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self._counts["refused"] += 1
                logger.error(
                    "%r refused a save of node %s: the write backlog holds %d bytes "
                    "(max_backlog_bytes=%d) and did not drain within the budget",
                    self,
                    write.record.node_id,
                    self._queue.bytes,
                    self.max_backlog_bytes,
                )
                raise BacklogFullError(
                    f"save of node {write.record.node_id} refused: {self._queue.bytes} bytes "
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
        self._queue.wake()

    def _encode_now(self, writes: Iterable[Write]) -> None:
        """At exit the codec threads may be gone: encode what is left on this thread."""
        for write in writes:
            if not write.ready:
                assert write.state is not None
                write.record = write.record.with_checkpoint(encode(write.state, self.codec))

    def _committed(self, batch: list[Write]) -> None:
        now = time.perf_counter()
        for write in batch:
            self._durable_ms.record((now - write.started) * 1000.0)
            if write.late:
                self._counts["late"] += 1
        self._batch_size.record(len(batch))
        self._room.set()

    # -- reading --------------------------------------------------------------------

    async def decode_state(self, node: ExecutionNode) -> bytes | None:
        """The state a node version carries (its framed `checkpoint`, decoded), or None.
        CheckpointCorruptError names the node when the blob cannot be read."""
        blob = node.checkpoint
        if blob is None:
            return None
        if len(blob) < self.offload_bytes:
            return decode(blob, node.id)
        return await asyncio.get_running_loop().run_in_executor(None, decode, blob, node.id)

    async def load(self, node_id: str) -> NodeState | None:
        """The latest version of a node and its state: hot cache, then queue, then store."""
        self._check_open()
        write = self._hot.get(node_id) or self._queue.latest(node_id)
        if write is not None:
            return await self._state_of(write)
        record = await self.store.read(node_id)
        if record is None:
            return None
        return await self._loaded(record)

    async def _state_of(self, write: Write) -> NodeState:
        node = write.record.to_node()
        state = write.state
        if state is None:
            state = await self.decode_state(node)
        return NodeState(node, state)

    async def _loaded(self, record: NodeRecord) -> NodeState:
        node = record.to_node()
        state = await self.decode_state(node)
        cached = Write(record, state)
        self._hot.put(record.node_id, cached, cached.size)
        return NodeState(node, state)

    async def latest(self, execution_id: str) -> NodeState | None:
        """The most recent checkpoint of an execution, including writes still queued."""
        self._check_open()
        write = self._queue.newest(
            lambda w: (
                w.record.execution_id == execution_id
                and (w.state is not None or w.record.checkpoint is not None)
            )
        )
        if write is not None:
            return await self._state_of(write)
        record = await self.store.latest_checkpoint(execution_id)
        return None if record is None else await self._loaded(record)

    async def list_nodes(self, execution_id: str) -> list[ExecutionNode]:
        """Latest version of each node of an execution in first-seen order, queued included."""
        self._check_open()
        records = await self.store.list_nodes(execution_id)
        position = {record.node_id: i for i, record in enumerate(records)}
        for write in list(self._queue.pending):
            if write.record.execution_id == execution_id:
                index = position.setdefault(write.record.node_id, len(records))
                if index == len(records):
                    records.append(write.record)
                else:
                    records[index] = write.record
        return [record.to_node() for record in records]

    async def versions(self, execution_id: str) -> list[ExecutionNode]:
        """Every version of every node of an execution, in save order, queued ones
        included: the execution's whole log. Each carries its framed checkpoint;
        `decode_state` reads it."""
        self._check_open()
        records = await self.store.list_versions(execution_id)
        queued = [w for w in list(self._queue.pending) if w.record.execution_id == execution_id]
        self._encode_now(queued)
        stored = {record.version_id for record in records}
        records.extend(w.record for w in queued if w.record.version_id not in stored)
        return [record.to_node() for record in records]

    async def list_executions(self) -> list[str]:
        """Every execution id, in first-seen order, queued ones included."""
        self._check_open()
        stored = await self.store.list_executions()
        queued = (w.record.execution_id for w in list(self._queue.pending))
        return list(dict.fromkeys([*stored, *queued]))

    async def history(self, node_id: str) -> list[ExecutionNode]:
        """Every committed version of a node, oldest first."""
        self._check_open()
        return [record.to_node() for record in await self.store.history(node_id)]

    def stats(self) -> EngineStats:
        return EngineStats(
            **self._counts,
            abandoned=self._queue.abandoned,
            store_errors=self._queue.failures,
            commits=self._queue.commits,
            backlog_writes=len(self._queue),
            backlog_bytes=self._queue.bytes,
            save_ms=self._save_ms.summary(),
            durable_ms=self._durable_ms.summary(),
            batch_size=self._batch_size.summary(),
        )


def _expire(ack: asyncio.Future[bool]) -> None:
    """The budget ran out: the save returns False; its write stays queued."""
    if not ack.done():
        ack.set_result(False)


def _check_framed(node_id: str, blob: bytes) -> None:
    if not isinstance(blob, bytes) or not blob or blob[0] not in set(Codec):
        raise InvalidNodeError(
            f"node {node_id}: checkpoint must be a blob framed by a livingai codec; "
            "pass the raw state as save(node, state=...) instead"
        )
