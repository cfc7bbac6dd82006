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
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from .cache import HotCache
from .codec import Codec, decode, default_codec, encode
from .commits import CommitQueue, Write
from .errors import (
    BacklogFullError,
    CheckpointCorruptError,
    ConfigError,
    InvalidNodeError,
    WrongLoopError,
    check_setting,
)
from .histogram import Histogram
from .lifecycle import Closable
from .listing import OPEN, ExecutionEntry, ExecutionPage, is_run_record, page_query
from .model import ExecutionNode, NodeRecord, Status, corrupt_node
from .retention import check_keep, execution_ids_to_delete, node_ids_to_delete
from .shutdown import handle_sigterm
from .store import (
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
from .usage import UsageBy, UsageRow, add_up, check_grouping, merge

logger = logging.getLogger("livingai")

_MiB = 1024 * 1024
# A core is left to the event loop: with as many busy threads as cores, the loop waits
# for a CPU or the GIL (measured on 2 cores: saves 8-10 ms later past the budget).
CODEC_THREADS = max(1, (os.cpu_count() or 2) - 1)


class NodeState(NamedTuple):
    """A node as loaded, with its state: the one its newest version carries, or, when that
    version was saved without one, the newest earlier state of the node (None if none)."""

    node: ExecutionNode
    state: bytes | None


class _Cached(NamedTuple):
    """A hot-cache entry: the node's newest version (queued or loaded) and its state."""

    write: Write
    state: bytes | None


@dataclass(frozen=True)
class EngineStats:
    """Counters since the engine was created; latencies in milliseconds."""

    # Every save ends as exactly one of these, so that, at any moment,
    # saves == in_budget + late + rejected + refused + abandoned + backlog_writes
    saves: int  # save() calls that passed validation
    in_budget: int  # committed within the budget (a save that returned True)
    late: int  # committed after the budget ran out (a save that returned False)
    rejected: int  # refused by the store for good; each logged, its save raised
    refused: int  # saves that raised BacklogFullError (nothing queued)
    abandoned: int  # queued writes given up (close() timed out or was cancelled, an
    # unusable store, exit, SIGTERM); each logged
    store_errors: int  # store writes that raised; transient ones are retried
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
    """Checkpoints agent steps into a store without stalling the agent.

    An engine belongs to the event loop it is first used on (its queue, its task and its
    futures live there): use it from another loop and it raises WrongLoopError. Make one
    engine per loop, for instance inside the function `asyncio.run` runs.
    """

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
        close_timeout_seconds: float = 30.0,
        exit_flush_seconds: float = 10.0,
        handle_sigterm: bool = True,
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
        check_setting("close_timeout_seconds", close_timeout_seconds, minimum=0)
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
        self.close_timeout_seconds = close_timeout_seconds
        self.handle_sigterm = handle_sigterm
        self._hot: HotCache[_Cached] = HotCache(hot_capacity, hot_max_bytes, hot_ttl_seconds)
        self._queue = CommitQueue(
            self,
            self._write,
            what="store write",
            lost="queued writes were NOT stored",
            max_batch_bytes=max_batch_bytes,
            retry_max_delay_seconds=retry_max_delay_seconds,
            exit_flush_seconds=exit_flush_seconds,
            prepare=self._encode_now,
            on_commit=self._committed,
            on_drop=self._dropped,
        )
        self._encoder: _Encoder | None = None
        self._encode_signalled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room = asyncio.Event()  # set by every commit: a full backlog has room again
        self._counts = dict.fromkeys(("saves", "in_budget", "late", "refused"), 0)
        self._reported: set[str] = set()  # versions already logged as corrupt
        self._save_ms = Histogram()
        self._durable_ms = Histogram()
        self._batch_size = Histogram()
        self._closed = False

    def __repr__(self) -> str:
        return f"CheckpointEngine({self.store!r})"

    @property
    def limits(self) -> StoreLimits:
        """The store's limits, which save() enforces (a Redis store learns its server's
        once connected)."""
        return limits_of(self.store)

    # -- lifecycle ------------------------------------------------------------------

    def _enter(self) -> asyncio.AbstractEventLoop:
        """Every operation starts here: open, and on the engine's own loop."""
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._room = asyncio.Event()
            if self.handle_sigterm:
                handle_sigterm(loop)
        elif self._loop is not loop:
            raise WrongLoopError(
                f"{self!r} belongs to the event loop it was first used on and was used "
                "from another one; make one engine per event loop (inside the function "
                "asyncio.run runs, say)"
            )
        return loop

    async def flush(self, execution_id: str | None = None) -> None:
        """Wait until every write queued so far (of `execution_id` only, if given; those
        queued before them go first) is settled, retrying store errors; raises the
        StoreError of the first that was rejected or abandoned."""
        self._enter()
        if execution_id is None:
            await self._queue.flush()
            return
        newest = self._queue.newest(lambda write: write.record.execution_id == execution_id)
        if newest is not None:
            await self._queue.flush(newest.position)

    async def close(self, abandon_after_seconds: float | None = None) -> None:
        """Flush, stop the writer and close the store. Writes still queued after
        `abandon_after_seconds` (default `close_timeout_seconds`; `math.inf`: no bound) are
        counted, logged and given up. Cancelled, it gives up what is queued the same way;
        a later close() finishes the job."""
        if abandon_after_seconds is None:
            abandon_after_seconds = self.close_timeout_seconds
        bound = None if math.isinf(abandon_after_seconds) else abandon_after_seconds
        await self._closing(lambda: self._release(bound))

    async def _release(self, abandon_after_seconds: float | None) -> None:
        if self._queue.pending and self._loop is not asyncio.get_running_loop():
            raise WrongLoopError(
                f"{self!r} has {len(self._queue)} writes queued on the event loop it was "
                "first used on; close it there"
            )
        try:
            await self._queue.close(abandon_after_seconds)
        finally:
            if self._encoder is not None:
                self._encoder.stop()
                self._encoder = None
            await self.store.close()

    # -- saving ---------------------------------------------------------------------

    async def save(
        self,
        node: ExecutionNode,
        state: bytes | None = None,
        *,
        durable: bool = False,
        fence: Lease | None = None,
        wait: bool = True,
    ) -> bool:
        """Checkpoint `node` (and `state`, if given). True when committed within the budget;
        False when still queued: it commits later and is never dropped. With `durable`,
        wait for the commit however long the store takes (the budget does not apply):
        for what must be on disk before the agent goes on, such as a tool's intent.
        With `fence`, a lease on the node's execution, the store takes the write only while
        that lease is still held (FencedError otherwise): a worker whose execution was
        taken over cannot write to it any more. With `wait=False`, the save is queued and
        returns False at once; it commits in queue order as every write does (before any
        later save returns True): for a record a crash may lose because it is made again
        anyway (a model response: the model is asked again on resume). It is never
        dropped otherwise, and a failure is counted and logged as a late write's is.

        Raises InvalidNodeError (nothing stored) for a node no store could keep or one
        over the store's limits; RecordRejectedError when the store refused it for good
        within the wait; StoreError when it had to be abandoned within the wait. A save
        that returned False and then met either is counted and logged (`stats()`), and
        the next flush() raises."""
        start = time.perf_counter()
        deadline = start + self.overhead_budget_ms / 1000.0
        loop = self._enter()
        if durable and not wait:
            raise ConfigError(f"node {node.id}: a durable save waits for its commit (wait=False)")
        if fence is not None and fence.execution_id != node.execution_id:
            raise InvalidNodeError(
                f"node {node.id} is of execution {node.execution_id!r}; its fence is a lease "
                f"on {fence.execution_id!r}"
            )
        if state is not None:
            if not isinstance(state, bytes | bytearray | memoryview):
                raise InvalidNodeError(
                    f"node {node.id}: state must be bytes; got {type(state).__name__}"
                )
            state = bytes(state)
            record = NodeRecord.from_node(node)
            self._check_limits(record, len(state))
            cached_state: bytes | None = state
        else:
            record = NodeRecord.from_node(node, node.checkpoint)
            if node.checkpoint is not None:
                self._check_limits(record, len(node.checkpoint))
                cached_state = await self._check_framed(node)
            else:
                self._check_limits(record, 0)
                previous = self._hot.get(record.node_id)
                cached_state = None if previous is None else previous.state
        ack: asyncio.Future[bool] | None = loop.create_future() if wait else None
        write = Write(record, state, ack, None if fence is None else fence.token)
        if self._queue.bytes + write.size > self.max_backlog_bytes:
            await self._wait_for_room(write, deadline)
        # close() may have begun while this save waited: its flush would not wait for a
        # write queued now, so it is refused (nothing stored) rather than left behind.
        self._check_open()
        self._counts["saves"] += 1
        if state is None and node.checkpoint is None and cached_state is None:
            self._hot.discard(record.node_id)  # its state, if any, is found on load
        else:
            size = write.size + len(cached_state or b"")  # the state, then also its blob
            self._hot.put(record.node_id, _Cached(write, cached_state), size)
        if state is not None and len(state) < self.offload_bytes:
            write.record = record.with_checkpoint(encode(state, self.codec))
        self._queue.put(write)
        if not write.ready:
            # Large states are compressed on a thread (zlib and zstd release the GIL),
            # so the event loop keeps running other agents meanwhile.
            if self._encoder is None:
                self._encoder = _Encoder(self.codec, self._encoded_elsewhere)
            self._encoder.submit(write)
        if ack is None:
            self._save_ms.record((time.perf_counter() - start) * 1000.0)
            return False
        remaining = max(0.0, deadline - time.perf_counter())
        timer = loop.call_at(loop.time() + remaining, _expire, write, durable)
        try:
            return await ack
        finally:
            timer.cancel()
            self._save_ms.record((time.perf_counter() - start) * 1000.0)

    async def _write(self, records: list[NodeRecord], fences: Fences | None) -> None:
        """The commit queue's one write: a batch, fenced when its writes carry leases."""
        if fences is None:
            await self.store.append(records)
        else:
            await self._leasing().append(records, fences=fences)

    def _leasing(self) -> LeaseStore:
        if not isinstance(self.store, LeaseStore):
            raise ConfigError(
                f"{self.store!r} keeps no leases; durable runs need a store that does "
                "(every store of livingai does)"
            )
        return self.store

    # -- leases ---------------------------------------------------------------------

    async def acquire_lease(
        self, execution_id: str, worker_id: str, seconds: float, *, take_over: str | None = None
    ) -> Lease:
        """Own an execution for `seconds`: LeaseHeldError while another live worker does.
        The same worker takes its own lease back at once (a restarted process), and so
        does anyone from `take_over`, a holder known to be gone."""
        self._enter()
        return await self._leasing().acquire_lease(
            execution_id, worker_id, seconds, take_over=take_over
        )

    async def renew_lease(self, lease: Lease, seconds: float) -> Lease | None:
        """Keep owning it, even after it expired if no one took it meanwhile; None once
        the lease was lost (taken over, or released)."""
        self._enter()
        return await self._leasing().renew_lease(lease, seconds)

    async def release_lease(self, lease: Lease) -> None:
        self._enter()
        await self._leasing().release_lease(lease)

    async def leases(self) -> list[Lease]:
        """Every live lease: who runs which execution now."""
        self._enter()
        return await self._leasing().leases()

    # -- retention ------------------------------------------------------------------

    async def delete_executions(self, execution_ids: Sequence[str]) -> int:
        """Delete these executions whole, with their leases and usage; how many versions
        went. What is queued is committed first, so nothing of theirs lands after. The
        one exception to the append-only log: Runtime.gc decides what may go."""
        self._enter()
        ids = execution_ids_to_delete(execution_ids)
        await self.flush()
        deleted = await self._retaining().delete_executions(ids)
        gone = set(ids)
        self._hot.discard_if(lambda cached: cached.write.record.execution_id in gone)
        return deleted

    async def delete_nodes(self, execution_id: str, node_ids: Sequence[str]) -> int:
        """Delete every version of these nodes of the execution (node ids it does not have
        are ignored); how many versions went. What is queued is committed first, so no
        version of theirs lands after; the hot cache forgets these node ids whichever
        execution its entry is of (an entry's state may come from a deleted version). For
        retention within a run: a LangGraph checkpointer prunes single checkpoints."""
        self._enter()
        ids = node_ids_to_delete(execution_id, node_ids)
        store = self._retaining()
        if not ids:
            return 0
        await self.flush()
        deleted = await store.delete_nodes(execution_id, ids)
        for node_id in ids:
            self._hot.discard(node_id)
        return deleted

    async def drop_checkpoints(self, execution_id: str, keep: int) -> int:
        """Drop the state blobs of all but the newest `keep` checkpointed versions of the
        execution (the versions stay); how many went."""
        self._enter()
        check_keep(keep)
        await self.flush()
        dropped = await self._retaining().drop_checkpoints(execution_id, keep)
        self._hot.discard_if(lambda cached: cached.write.record.execution_id == execution_id)
        return dropped

    def _retaining(self) -> RetentionStore:
        if not isinstance(self.store, RetentionStore):
            raise ConfigError(
                f"{self.store!r} cannot delete (it is not a RetentionStore); every store "
                "of livingai can"
            )
        return self.store

    def _check_limits(self, record: NodeRecord, state_bytes: int) -> None:
        """Refuse at save() what the store could never keep, naming the limit."""
        limits = self.limits
        node_id = record.node_id
        for name, value in (
            ("id", node_id),
            ("execution_id", record.execution_id),
            ("parent_id", record.parent_id),
        ):
            if value is not None and len(value) * 4 > limits.max_id_bytes:
                size = len(value.encode())
                if size > limits.max_id_bytes:
                    raise InvalidNodeError(
                        f"node {node_id[:80]}: {name} is {size} bytes; {self.store!r} keeps "
                        f"ids of at most {limits.max_id_bytes} bytes"
                    )
        if len(record.body) > limits.max_body_bytes:
            raise InvalidNodeError(
                f"node {node_id}: input, output, error and metadata take {len(record.body)} "
                f"bytes as JSON; {self.store!r} keeps at most {limits.max_body_bytes}"
            )
        if state_bytes > limits.max_state_bytes:
            raise InvalidNodeError(
                f"node {node_id}: its state is {state_bytes} bytes; {self.store!r} keeps "
                f"states of at most {limits.max_state_bytes} bytes"
            )

    async def _check_framed(self, node: ExecutionNode) -> bytes:
        """A checkpoint passed in already framed (a loaded node saved again) must read
        back whole: its decoded state, or InvalidNodeError."""
        blob = node.checkpoint
        if not isinstance(blob, bytes) or not blob:
            raise InvalidNodeError(
                f"node {node.id}: checkpoint must be a blob framed by a livingai codec; "
                "pass the raw state as save(node, state=...) instead"
            )
        try:
            state = await self.decode_state(node)
        except CheckpointCorruptError as exc:
            raise InvalidNodeError(
                f"node {node.id}: checkpoint is not a blob framed by a livingai codec "
                f"({exc}); pass the raw state as save(node, state=...) instead"
            ) from None
        assert state is not None
        return state

    async def _wait_for_room(self, write: Write, deadline: float) -> None:
        while self._queue.bytes + write.size > self.max_backlog_bytes and self._queue.pending:
            self._room.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self._counts["saves"] += 1
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
            self._counts["late" if write.late else "in_budget"] += 1
        self._batch_size.record(len(batch))
        self._room.set()

    def _dropped(self, writes: list[Write]) -> None:
        """Writes rejected or abandoned: the hot cache must not serve them any more."""
        for write in writes:
            cached = self._hot.get(write.record.node_id)
            if cached is not None and cached.write is write:
                self._hot.discard(write.record.node_id)
        self._room.set()

    # -- reading --------------------------------------------------------------------

    async def decode_state(self, node: ExecutionNode) -> bytes | None:
        """The state a node version carries (its framed `checkpoint`, decoded), or None.
        CheckpointCorruptError names the node when the blob cannot be read."""
        return await self._decode(node.checkpoint, node.id)

    async def _decode(self, blob: bytes | None, node_id: str) -> bytes | None:
        if blob is None:
            return None
        if len(blob) < self.offload_bytes:
            return decode(blob, node_id)
        return await asyncio.get_running_loop().run_in_executor(None, decode, blob, node_id)

    async def load(self, node_id: str) -> NodeState | None:
        """The newest version of a node and its state (see NodeState): hot cache, then
        queue, then store. CheckpointCorruptError names the node if it cannot be read."""
        self._enter()
        cached = self._hot.get(node_id)
        if cached is not None:
            return NodeState(cached.write.record.to_node(), cached.state)
        write = self._queue.latest(node_id)
        saves = self._counts["saves"]
        record = write.record if write is not None else await self.store.read(node_id)
        if record is None:
            return None
        node = record.to_node()
        if write is not None and write.state is not None:
            state: bytes | None = write.state
        else:
            state = await self._decode(record.checkpoint, node_id)
        if state is None:
            state = await self._earlier_state(node_id)
        if self._counts["saves"] != saves:
            # Saved while this read waited: what it read may be older than that save, so
            # it is returned but not cached (the cache would keep serving it).
            return NodeState(node, state)
        entry = _Cached(write or Write(record), state)
        self._hot.put(node_id, entry, entry.write.size + len(state or b""))
        return NodeState(node, state)

    async def _earlier_state(self, node_id: str) -> bytes | None:
        """The newest state among a node's versions: queued ones first, then stored."""
        queued = self._queue.newest(
            lambda w: (
                w.record.node_id == node_id
                and (w.state is not None or w.record.checkpoint is not None)
            )
        )
        if queued is not None:
            if queued.state is not None:
                return queued.state
            return await self._decode(queued.record.checkpoint, node_id)
        for record in reversed(await self.store.history(node_id)):
            if record.checkpoint is not None:
                return await self._decode(record.checkpoint, node_id)
        return None

    async def latest(self, execution_id: str) -> NodeState | None:
        """The most recent checkpoint of an execution, including writes still queued."""
        self._enter()
        write = self._queue.newest(
            lambda w: (
                w.record.execution_id == execution_id
                and (w.state is not None or w.record.checkpoint is not None)
            )
        )
        if write is None:
            record = await self.store.latest_checkpoint(execution_id)
            if record is None:
                return None
            write = Write(record)
        node = write.record.to_node()
        state = write.state
        if state is None:
            state = await self._decode(write.record.checkpoint, node.id)
        return NodeState(node, state)

    def _nodes(self, records: Iterable[NodeRecord]) -> list[ExecutionNode]:
        """The nodes of listed versions; one that cannot be read is shown as a FAILED
        node saying why (see corrupt_node), logged once, and the listing goes on."""
        nodes = []
        for record in records:
            try:
                nodes.append(record.to_node())
            except CheckpointCorruptError as exc:
                if record.version_id not in self._reported:
                    self._reported.add(record.version_id)
                    logger.error("%r: %s", self, exc)
                nodes.append(corrupt_node(record, exc))
        return nodes

    async def list_nodes(self, execution_id: str) -> list[ExecutionNode]:
        """Latest version of each node of an execution in first-seen order, queued included."""
        self._enter()
        records = await self.store.list_nodes(execution_id)
        position = {record.node_id: i for i, record in enumerate(records)}
        for write in list(self._queue.pending):
            if write.record.execution_id == execution_id:
                index = position.setdefault(write.record.node_id, len(records))
                if index == len(records):
                    records.append(write.record)
                else:
                    records[index] = write.record
        return self._nodes(records)

    async def versions(self, execution_id: str) -> list[ExecutionNode]:
        """Every version of every node of an execution, in save order, queued ones
        included: the execution's whole log. Each carries its framed checkpoint;
        `decode_state` reads it."""
        self._enter()
        records = await self.store.list_versions(execution_id)
        queued = [w for w in list(self._queue.pending) if w.record.execution_id == execution_id]
        self._encode_now(queued)
        stored = {record.version_id for record in records}
        records.extend(w.record for w in queued if w.record.version_id not in stored)
        return self._nodes(records)

    async def list_executions(self) -> list[str]:
        """Every execution id, in first-seen order, queued ones included."""
        self._enter()
        stored = await self.store.list_executions()
        queued = (w.record.execution_id for w in list(self._queue.pending))
        return list(dict.fromkeys([*stored, *queued]))

    async def open_runs(self) -> list[ExecutionEntry]:
        """The entries of the executions whose run record is unfinished (PENDING or
        RUNNING), oldest first, queued saves included: from the store's index when it is
        an IndexStore (the cost of what it returns), else from every execution's log."""
        self._enter()
        stored = await open_runs_of(self.store)
        found = {entry.execution_id: entry for entry in stored}
        for write in list(self._queue.pending):  # newer than anything stored
            record = write.record
            if is_run_record(record):
                entry = found.get(record.execution_id)
                if entry is None:
                    entry = ExecutionEntry(record.execution_id, record.created_at)
                found[record.execution_id] = entry.updated(record)
        opened = [entry for entry in found.values() if entry.status in OPEN]
        return sorted(opened, key=lambda entry: entry.key)

    async def list_page(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        status: Status | str | None = None,
        agent: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> ExecutionPage:
        """A page of executions, newest first (ExecutionEntry: when each started, its
        run's agent and status): `limit` (1-1000) after `cursor` (a page's `cursor`; None:
        from the newest), of runs with this status and agent, started in [since, until)
        (naive: UTC). From the store's index when it is an IndexStore; else worked out
        from every execution's log. Committed executions only: a save still queued shows
        once it commits."""
        self._enter()
        query = page_query(
            limit=limit, cursor=cursor, status=status, agent=agent, since=since, until=until
        )
        return await page_of(self.store, query)

    async def history(self, node_id: str) -> list[ExecutionNode]:
        """Every committed version of a node, oldest first."""
        self._enter()
        return self._nodes(await self.store.history(node_id))

    async def usage(
        self,
        by: UsageBy = "total",
        *,
        execution_ids: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageRow]:
        """Tokens and costs of model calls added up, grouped `by` "execution", "model",
        "day" (UTC) or "total", for the executions named (default: all) and created in
        [since, until); queued writes included. The store does the sums when it can
        (every store here does); another store's versions are read and added up here."""
        self._enter()
        check_grouping(by)
        queued = add_up(
            (w.record for w in list(self._queue.pending)),
            by,
            execution_ids=execution_ids,
            since=since,
            until=until,
        )
        if isinstance(self.store, UsageStore):
            stored = await self.store.usage(
                by, execution_ids=execution_ids, since=since, until=until
            )
        else:
            ids = execution_ids or await self.store.list_executions()
            versions = [r for x in ids for r in await self.store.list_versions(x)]
            stored = add_up(versions, by, since=since, until=until)
        return merge(stored, queued)

    def failing_for(self) -> float:
        """Seconds the store has failed every write since one last landed (0.0 while
        writes land): how long an outage has lasted, for callers that wait one out."""
        since = self._queue.failing_since
        return 0.0 if since is None else time.perf_counter() - since

    def stats(self) -> EngineStats:
        return EngineStats(
            **self._counts,
            rejected=self._queue.rejected,
            abandoned=self._queue.abandoned,
            store_errors=self._queue.failures,
            commits=self._queue.commits,
            backlog_writes=len(self._queue),
            backlog_bytes=self._queue.bytes,
            save_ms=self._save_ms.summary(),
            durable_ms=self._durable_ms.summary(),
            batch_size=self._batch_size.summary(),
        )


def _expire(write: Write, durable: bool) -> None:
    """The budget ran out before the commit: the write is late, and, unless the save is
    durable, the save returns False; its write stays queued."""
    ack = write.ack
    if ack is None or ack.done():
        return
    write.late = True
    if not durable:
        ack.set_result(False)
