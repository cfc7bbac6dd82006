"""The ordered commit queue: the one piece that writes queued records to a store, shared
by the engine (writes to its store) and the tiered store (copies to its cold store).

Writes go in in order and are committed in order: one task on the event loop takes the
longest ready prefix of the queue (within `max_batch_bytes`) and writes it in one call,
retrying failures with backoff until it lands. Then each write's `ack` is settled True
and whoever waits in `flush()` for it is woken. What can never land (the target was
closed, `close(timeout)` ran out, the process is exiting) is abandoned: counted, logged
at ERROR with node ids, and reported to its waiters as StoreError. Nothing else is
dropped.

When the event loop ends without close() (asyncio.run returning), the task commits what
is queued before it stops, within `exit_flush_seconds`; an atexit hook does the same for
a loop left open. Never silent: what cannot be stored then is abandoned.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import random
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .errors import ClosedError, StoreError
from .model import NodeRecord

logger = logging.getLogger("livingai")


class Write:
    """One queued record. `state` is the raw state while its blob is being encoded
    elsewhere (not `ready` until then); `ack` is settled True once committed."""

    __slots__ = ("ack", "late", "record", "size", "started", "state")

    def __init__(
        self,
        record: NodeRecord,
        state: bytes | None = None,
        ack: asyncio.Future[bool] | None = None,
    ) -> None:
        self.record = record
        self.state = state
        self.ack = ack
        # What the queue holds: the state, then its blob (at most about the state's size).
        self.size = record.size + (len(state) if state is not None else 0)
        self.started = time.perf_counter()
        self.late = False  # the save returned False before the commit

    @property
    def ready(self) -> bool:
        return self.state is None or self.record.checkpoint is not None


WriteBatch = Callable[[list[NodeRecord]], Awaitable[None]]


def backoff_seconds(failures: int, cap: float) -> float:
    """Delay before retry number `failures`: 50 ms doubling up to `cap`, with 20% jitter.
    The exponent is bounded: a store down for hours must not overflow a float."""
    return min(0.05 * 2.0 ** min(failures - 1, 16), cap) * random.uniform(0.8, 1.2)


def resolve(future: asyncio.Future[Any] | None, outcome: object) -> None:
    """Settle a future unless it is settled, cancelled, or its loop is gone (at exit)."""
    if future is None or future.done() or future.get_loop().is_closed():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
        future.exception()  # marked retrieved: whoever abandoned it logged it
    else:
        future.set_result(outcome)


_live_queues: weakref.WeakSet[CommitQueue] = weakref.WeakSet()


class CommitQueue:
    """Writes committed in order by one task, with retries; see the module docstring.

    `write_batch` stores a batch, all or none, and may be called again with the same
    batch after a failure (stores skip version ids they hold). `what` names the write in
    log lines ("store write", "cold append"), `lost` says what an abandoned write means.
    A batch is due as soon as a write is ready, or with `linger_seconds`, once the oldest
    has waited that long, `max_batch_bytes` are queued, or someone waits in flush().
    `prepare` makes writes ready on the calling thread when the task must finish at exit;
    `on_commit` runs on the loop after each committed batch.
    """

    def __init__(
        self,
        owner: object,
        write_batch: WriteBatch,
        *,
        what: str,
        lost: str,
        max_batch_bytes: int,
        retry_max_delay_seconds: float,
        exit_flush_seconds: float,
        linger_seconds: float = 0.0,
        prepare: Callable[[Iterable[Write]], None] | None = None,
        on_commit: Callable[[list[Write]], None] | None = None,
    ) -> None:
        self.owner = owner
        self.what = what
        self.lost = lost
        self.max_batch_bytes = max_batch_bytes
        self.retry_max_delay_seconds = retry_max_delay_seconds
        self.exit_flush_seconds = exit_flush_seconds
        self.linger_seconds = linger_seconds
        self._write_batch = write_batch
        self._prepare = prepare
        self._on_commit = on_commit
        self.pending: deque[Write] = deque()  # oldest first; read it, never change it
        self.bytes = 0
        self.failures = 0  # batch writes that raised; each retried
        self.commits = 0  # batches written
        self.committed = 0  # writes in them
        self.abandoned = 0
        self._latest: dict[str, Write] = {}  # node id -> its newest queued write
        self._queued_total = 0  # writes ever queued; commits keep queue order, so
        self._settled_total = 0  # flush() waits until settled (committed or abandoned)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # catches up
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        _live_queues.add(self)

    def __len__(self) -> int:
        return len(self.pending)

    # -- queueing -------------------------------------------------------------------

    def start(self) -> None:
        """Bind to the running loop and run the task there, once per loop."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._task is not None and not self._task.done():
            return
        if self.pending and self._loop is not None and self._loop is not loop:
            raise RuntimeError(
                f"{self.owner!r} has {len(self.pending)} writes queued on another event "
                "loop; call flush() there first"
            )
        if self._loop is not loop:
            self._loop = loop
            self._wake = asyncio.Event()
        self._task = loop.create_task(self._run(), name=f"livingai-{self.what}")

    def put(self, write: Write) -> None:
        """Queue `write` (on the running loop); it commits after every write before it."""
        self.start()
        was_empty = not self.pending
        self.pending.append(write)
        self.bytes += write.size
        self._queued_total += 1
        self._latest[write.record.node_id] = write
        # With a linger the task sleeps until the oldest write is due: wake it only when
        # that changes (the queue was empty) or a batch is full.
        if write.ready and (
            not self.linger_seconds or was_empty or self.bytes >= self.max_batch_bytes
        ):
            self._wake.set()

    def wake(self) -> None:
        """A queued write became ready."""
        self._wake.set()

    def latest(self, node_id: str) -> Write | None:
        """The newest queued write of a node."""
        return self._latest.get(node_id)

    def newest(self, match: Callable[[Write], bool]) -> Write | None:
        """The newest queued write that matches."""
        for write in reversed(self.pending):
            if match(write):
                return write
        return None

    async def flush(self) -> None:
        """Wait until every write queued so far is committed; StoreError if any of them
        had to be abandoned."""
        if self._settled_total >= self._queued_total:
            return
        self.start()
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append((self._queued_total, waiter))
        self._wake.set()  # a flush does not wait for the linger
        await asyncio.shield(waiter)

    async def close(self, abandon_after_seconds: float | None) -> None:
        """Commit what is queued, waiting at most `abandon_after_seconds` (None: as long as
        it takes), abandon what is left, and stop the task."""
        if self._closed:
            return
        self._closed = True  # the task's cancellation below must not flush again
        try:
            if self.pending:
                await asyncio.wait_for(self.flush(), abandon_after_seconds)
        except TimeoutError:
            self.abandon(f"close() gave up after {abandon_after_seconds}s")
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Cancel the task; with writes queued (not at close()), its cancellation handler
        commits them. Only ever one task commits: two would pop each other's writes."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pending and not self._closed:  # no task, or cancelled before it started
            await self._flush_at_exit()

    # -- the task -------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                await self._batch_due()
                await self._commit(self._next_batch())
        except ClosedError as exc:  # the target was closed under us: nothing can land now
            self.abandon(f"the {self.what} was refused: {exc}")
        except asyncio.CancelledError:
            # The loop is shutting down (asyncio.run returned without close()):
            # commit what is queued before the process goes, within a bound.
            if self.pending and not self._closed:
                await self._flush_at_exit()
            raise

    async def _batch_due(self) -> None:
        while True:
            timeout: float | None = None
            if self.pending and self.pending[0].ready:
                if not self.linger_seconds or self._waiters or self.bytes >= self.max_batch_bytes:
                    return
                timeout = self.pending[0].started + self.linger_seconds - time.perf_counter()
                if timeout <= 0:
                    return
            self._wake.clear()
            if timeout is None:
                await self._wake.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _next_batch(self) -> list[Write]:
        """The longest prefix of ready writes within max_batch_bytes (at least one)."""
        batch: list[Write] = []
        size = 0
        for write in self.pending:
            if not write.ready or (batch and size + write.size > self.max_batch_bytes):
                break
            batch.append(write)
            size += write.size
        return batch

    async def _commit(self, batch: list[Write]) -> None:
        records = [write.record for write in batch]
        failures = 0
        while True:
            try:
                await self._write_batch(records)
                break
            except ClosedError:
                raise
            except Exception as exc:
                self.failures += 1
                failures += 1
                delay = backoff_seconds(failures, self.retry_max_delay_seconds)
                if failures == 1 or failures % 10 == 0:
                    logger.warning(
                        "%r: %s of %d records failed (attempt %d, %d queued), "
                        "retrying in %.2fs: %s",
                        self.owner,
                        self.what,
                        len(records),
                        failures,
                        len(self.pending),
                        delay,
                        exc,
                    )
                await asyncio.sleep(delay)
        if failures:
            logger.warning("%r: %s succeeded after %d failures", self.owner, self.what, failures)
        for write in batch:
            self.pending.popleft()
            self.bytes -= write.size
            if self._latest.get(write.record.node_id) is write:
                del self._latest[write.record.node_id]
            resolve(write.ack, True)
        self._settled_total += len(batch)
        self.commits += 1
        self.committed += len(batch)
        if self._on_commit is not None:
            self._on_commit(batch)
        self._release(None)

    async def _flush_at_exit(self) -> None:
        """Commit everything queued, made ready here; give up after exit_flush_seconds."""
        try:
            async with asyncio.timeout(self.exit_flush_seconds):
                if self._prepare is not None:
                    self._prepare(self.pending)
                while self.pending:
                    await self._commit(self._next_batch())
        except Exception as exc:  # includes the timeout and ClosedError
            self.abandon(f"exit flush failed: {exc!r}")

    # -- giving up ------------------------------------------------------------------

    def abandon(self, why: str) -> None:
        """Give up every queued write: count, log with node ids, tell the waiters."""
        if not self.pending:
            return
        count = len(self.pending)
        self.abandoned += count
        nodes = ", ".join(dict.fromkeys(w.record.node_id for w in list(self.pending)[:20]))
        logger.error("%r: %d %s: %s; nodes: %s", self.owner, count, self.lost, why, nodes)
        error = StoreError(f"{self.owner!r}: {count} {self.lost}: {why}")
        for write in self.pending:
            resolve(write.ack, error)
        self.pending.clear()
        self._latest.clear()
        self.bytes = 0
        self._settled_total = self._queued_total
        self._release(error)

    def _release(self, error: StoreError | None) -> None:
        waiting = []
        for target, waiter in self._waiters:
            if target <= self._settled_total:
                resolve(waiter, error)
            else:
                waiting.append((target, waiter))
        self._waiters = waiting


@atexit.register
def _flush_queues_at_exit() -> None:
    """A loop stopped without cancelling its tasks leaves writes queued: store them now,
    within exit_flush_seconds, or count and log them. Never silent. An engine's flush may
    queue records in a tiered store's queue, so this goes round until nothing is left."""
    for _ in range(3):
        queues = [q for q in list(_live_queues) if q.pending and not q._closed]
        if not queues:
            return
        for queue in queues:
            try:
                loop = queue._loop
                if loop is not None and not loop.is_closed() and not loop.is_running():
                    loop.run_until_complete(queue.stop())
                else:
                    asyncio.run(queue._flush_at_exit())
            except Exception as exc:
                queue.abandon(f"exit flush failed: {exc!r}")
    for queue in list(_live_queues):
        if not queue._closed:
            queue.abandon("the process exited before they were stored")
