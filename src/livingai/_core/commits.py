"""The ordered commit queue: the one piece that writes queued records to a store, shared
by the engine (writes to its store) and the tiered store (copies to its cold store).

Writes go in in order and are committed in order: one task on the event loop takes the
longest ready prefix of the queue (within `max_batch_bytes`) and writes it in one call.
Then each write's `ack` is settled True and whoever waits in `flush()` for it is woken.
How a failed batch write ends depends on what the store says:

- StoreError: transient (down, locked, timed out). Retried with backoff until it lands.
- RecordRejectedError: something in the batch can never be stored. The batch is split
  in halves, in order, until the records at fault stand alone; the rest is committed,
  and each one at fault is rejected: counted, logged at ERROR with its node id and the
  store's reason, and its `ack` raises the error.
- StoreUnusableError: the store cannot work as configured. Every queued write is
  abandoned with that error (counted, logged), so callers hear of it instead of
  waiting forever; later writes try the store again.

What can never land for other reasons (the target was closed, `close()` ran out of time
or was cancelled, the process is ending) is abandoned too: counted, and every node id
logged at ERROR. Nothing is dropped silently.
See shutdown.py for what happens when the loop or the process ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .errors import ClosedError, RecordRejectedError, StoreError, StoreUnusableError
from .model import NodeRecord
from .store import Fences

logger = logging.getLogger("livingai")


class Write:
    """One queued record. `state` is the raw state while its blob is being encoded
    elsewhere (not `ready` until then); `ack` is settled True once committed."""

    __slots__ = ("ack", "fence", "late", "position", "record", "size", "started", "state")

    def __init__(
        self,
        record: NodeRecord,
        state: bytes | None = None,
        ack: asyncio.Future[bool] | None = None,
        fence: int | None = None,
    ) -> None:
        self.record = record
        self.state = state
        self.ack = ack
        self.fence = fence  # the lease token its execution must still have in the store
        # What the queue holds: the state, then its blob (at most about the state's size).
        self.size = record.size + (len(state) if state is not None else 0)
        self.started = time.perf_counter()
        self.late = False  # the save's budget ran out before the commit
        self.position = 0  # in the queue's order, from 1; set by put()

    @property
    def ready(self) -> bool:
        return self.state is None or self.record.checkpoint is not None


WriteBatch = Callable[[list[NodeRecord], Fences | None], Awaitable[None]]


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
        future.exception()  # marked retrieved: whoever gave the write up logged it
    else:
        future.set_result(outcome)


class _Waiter:
    """A flush() waiting until `target` writes are settled; `error` is set when one of
    them was rejected or abandoned."""

    __slots__ = ("error", "future", "target")

    def __init__(self, target: int, future: asyncio.Future[None]) -> None:
        self.target = target
        self.future = future
        self.error: StoreError | None = None


live_queues: weakref.WeakSet[CommitQueue] = weakref.WeakSet()
_NAMES_PER_LINE = 100  # node ids per ERROR line when writes are abandoned


class CommitQueue:
    """Writes committed in order by one task, with retries; see the module docstring.

    `write_batch` stores a batch, all or none, and may be called again with the same
    batch after a failure (stores skip version ids they hold); it is given the lease
    tokens the batch's writes are fenced with, or None. `what` names the write in
    log lines ("store write", "cold append"), `lost` says what an abandoned write means.
    A batch is due as soon as a write is ready, or with `linger_seconds`, once the oldest
    has waited that long, `max_batch_bytes` are queued, or someone waits in flush().
    `prepare` makes writes ready on the calling thread when the task must finish at exit;
    `on_commit` runs on the loop after each committed batch, `on_drop` after writes were
    rejected or abandoned.
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
        on_drop: Callable[[list[Write]], None] | None = None,
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
        self._on_drop = on_drop
        self.pending: deque[Write] = deque()  # oldest first; read it, never change it
        self.bytes = 0
        self.failures = 0  # batch writes that raised
        self.commits = 0  # batches written
        self.committed = 0  # writes in them
        self.rejected = 0  # writes the store refused for good; each logged
        self.abandoned = 0  # writes given up; each logged
        self.failing_since: float | None = None  # perf_counter of the first failed write
        # since the last one that landed: how long the store has been down, for callers
        # that wait out an outage up to a bound (durable runs)
        self.loop: asyncio.AbstractEventLoop | None = None  # where the task runs
        self.closed = False
        self._latest: dict[str, Write] = {}  # node id -> its newest queued write
        self._queued_total = 0  # writes ever queued; they settle in queue order, so
        self._settled_total = 0  # flush() waits until settled catches up
        self._writing = 0  # writes at the head of the queue in a store call right now
        self._exit_flushing = False  # flush_at_exit() is committing: no task may start
        self._waiters: list[_Waiter] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        live_queues.add(self)

    def __len__(self) -> int:
        return len(self.pending)

    # -- queueing -------------------------------------------------------------------

    def start(self) -> None:
        """Bind to the running loop and run the task there, once per loop."""
        loop = asyncio.get_running_loop()
        if self.loop is loop and self._task is not None and not self._task.done():
            return
        if self._exit_flushing:  # it commits what is queued (a SIGTERM during close())
            return
        if self.pending and self.loop is not None and self.loop is not loop:
            raise RuntimeError(
                f"{self.owner!r} has {len(self.pending)} writes queued on another event "
                "loop; call flush() there first"
            )
        if self.loop is not loop:
            self.loop = loop
            self._wake = asyncio.Event()
        self._task = loop.create_task(self._run(), name=f"livingai-{self.what}")

    def put(self, write: Write) -> None:
        """Queue `write` (on the running loop); it commits after every write before it."""
        self.start()
        was_empty = not self.pending
        self.pending.append(write)
        self.bytes += write.size
        self._queued_total += 1
        write.position = self._queued_total
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

    async def flush(self, position: int | None = None) -> None:
        """Wait until every write queued so far (up to `position`, if given) is settled;
        raises the error of the first of them that was rejected or abandoned."""
        target = self._queued_total if position is None else position
        if self._settled_total >= target:
            return
        self.start()
        assert self.loop is not None
        waiter = _Waiter(target, self.loop.create_future())
        self._waiters.append(waiter)
        self._wake.set()  # a flush does not wait for the linger
        await asyncio.shield(waiter.future)

    async def close(self, abandon_after_seconds: float | None) -> None:
        """Commit what is queued, waiting at most `abandon_after_seconds` (None: as long as
        it takes); abandon what is left, and stop the task. Cancelled (a timeout around
        it, Ctrl-C), it abandons what is left too, then lets the cancellation through."""
        self.closed = True  # the task's cancellation below must not flush again
        try:
            if self.pending:
                await asyncio.wait_for(self.flush(), abandon_after_seconds)
        except TimeoutError:
            self.abandon(f"close() gave up after {abandon_after_seconds}s")
        except asyncio.CancelledError:
            self.abandon("close() was cancelled")
            raise
        except StoreError:
            pass  # abandoned or rejected: each one already counted and logged
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Cancel the task; with writes queued (not at close()), its cancellation handler
        commits them. Only ever one task commits: two would pop each other's writes.
        Whatever is still queued then (no task, one cancelled before it started, writes
        queued after close() began) is committed here, or abandoned."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pending:
            await self.flush_at_exit()

    async def flush_at_exit(self) -> None:
        """Commit everything queued, made ready here; give up after exit_flush_seconds,
        abandoning (counting and logging) what is left."""
        self._exit_flushing = True
        try:
            async with asyncio.timeout(self.exit_flush_seconds):
                if self._prepare is not None:
                    self._prepare(self.pending)
                while self.pending:
                    await self._commit(self._next_batch())
        except Exception as exc:  # includes the timeout and ClosedError
            self.abandon(f"exit flush failed: {exc!r}")
        except BaseException as exc:  # cancelled again, Ctrl-C: what is left is lost
            self.abandon(f"exit flush was interrupted: {exc!r}")
            raise
        finally:
            self._exit_flushing = False

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
            if self.pending and not self.closed:
                await self.flush_at_exit()
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
        """Commit `batch` (the head of the queue), isolating records the store rejects."""
        pieces = [batch]
        while pieces:
            piece = pieces.pop(0)
            try:
                await self._store_call(piece)
            except RecordRejectedError as exc:
                if self._given_up(piece):
                    return
                if len(piece) == 1:
                    self._reject(piece[0], exc)
                else:  # halves, in order: the records at fault end up alone
                    half = len(piece) // 2
                    pieces[:0] = [piece[:half], piece[half:]]
                continue
            except StoreUnusableError as exc:
                self.abandon(str(exc), exc)
                return
            if self._given_up(piece):
                logger.warning(
                    "%r: %d writes were given up while being written and were stored after "
                    "all (still counted as abandoned): nodes %s",
                    self.owner,
                    len(piece),
                    ", ".join(dict.fromkeys(w.record.node_id for w in piece)),
                )
                return
            self._committed(piece)

    async def _store_call(self, piece: list[Write]) -> None:
        """Write `piece`, the head of the queue. Until the store answers, abandon() says
        these writes may be stored after all; so after a cancelled call too, which a
        store's thread may still finish."""
        self._writing = len(piece)
        try:
            await self._write_until_it_lands(piece)
        except Exception:
            self._writing = 0  # the store answered
            raise
        self._writing = 0

    def _given_up(self, piece: list[Write]) -> bool:
        """The queue was abandoned while `piece`, its head, was in a store call."""
        return not self.pending or self.pending[0] is not piece[0]

    async def _write_until_it_lands(self, batch: list[Write]) -> None:
        """Write `batch`, retrying transient store errors with backoff."""
        records = [write.record for write in batch]
        fences = {w.record.execution_id: w.fence for w in batch if w.fence is not None}
        failures = 0
        while True:
            try:
                await self._write_batch(records, fences or None)
                self.failing_since = None
                break
            except (ClosedError, RecordRejectedError, StoreUnusableError) as exc:
                self.failures += 1
                if isinstance(exc, RecordRejectedError):
                    self.failing_since = None  # the store answered: it is up
                raise
            except Exception as exc:
                self.failures += 1
                failures += 1
                if self.failing_since is None:
                    self.failing_since = time.perf_counter()
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

    def _committed(self, batch: list[Write]) -> None:
        for write in batch:
            self._settle_first(write)
            resolve(write.ack, True)
        self.commits += 1
        self.committed += len(batch)
        if self._on_commit is not None:
            self._on_commit(batch)
        self._release()

    def _settle_first(self, write: Write) -> None:
        """Take `write`, the oldest queued, off the queue."""
        taken = self.pending.popleft()
        assert taken is write, "writes settle in queue order"
        self.bytes -= write.size
        if self._latest.get(write.record.node_id) is write:
            del self._latest[write.record.node_id]
        self._settled_total += 1

    # -- giving up ------------------------------------------------------------------

    def _reject(self, write: Write, error: RecordRejectedError) -> None:
        self._settle_first(write)
        self.rejected += 1
        record = write.record
        logger.error(
            "%r: node %s (execution %s, version %s) was REJECTED by the store and not stored: %s",
            self.owner,
            record.node_id,
            record.execution_id,
            record.version_id,
            error,
        )
        self._fail_waiters(write.position, error)
        resolve(write.ack, error)
        if self._on_drop is not None:
            self._on_drop([write])
        self._release()

    def abandon(self, why: str, error: StoreError | None = None) -> None:
        """Give up every queued write: count, log every node id at ERROR, tell the
        waiters. The ids go _NAMES_PER_LINE to a line, so that no line is too long for a
        log to keep whole (journald, Docker) and together they name every one."""
        if not self.pending:
            return
        dropped = list(self.pending)
        count = len(dropped)
        self.abandoned += count
        if self._writing:
            why += (
                f" ({min(self._writing, count)} of them, the oldest, in a store call that had "
                "not answered: those may be stored after all)"
            )
        nodes = list(dict.fromkeys(w.record.node_id for w in dropped))
        first = ", ".join(nodes[:_NAMES_PER_LINE])
        if len(nodes) > _NAMES_PER_LINE:
            first += f" and {len(nodes) - _NAMES_PER_LINE} more, named in the lines after this"
        logger.error("%r: %d %s: %s; nodes: %s", self.owner, count, self.lost, why, first)
        for start in range(_NAMES_PER_LINE, len(nodes), _NAMES_PER_LINE):
            chunk = nodes[start : start + _NAMES_PER_LINE]
            logger.error(
                "%r: %s, nodes %d-%d of %d: %s",
                self.owner,
                self.lost,
                start + 1,
                start + len(chunk),
                len(nodes),
                ", ".join(chunk),
            )
        if error is None:
            error = StoreError(f"{self.owner!r}: {count} {self.lost}: {why}")
        self._fail_waiters(self._settled_total + 1, error)
        for write in dropped:
            resolve(write.ack, error)
        self.pending.clear()
        self._latest.clear()
        self.bytes = 0
        self._settled_total = self._queued_total
        if self._on_drop is not None:
            self._on_drop(dropped)
        self._release()

    def _fail_waiters(self, position: int, error: StoreError) -> None:
        """The write at `position` (and any after it, for an abandon) was not stored."""
        for waiter in self._waiters:
            if waiter.target >= position and waiter.error is None:
                waiter.error = error

    def _release(self) -> None:
        waiting = []
        for waiter in self._waiters:
            if waiter.target <= self._settled_total:
                resolve(waiter.future, waiter.error)
            else:
                waiting.append(waiter)
        self._waiters = waiting
