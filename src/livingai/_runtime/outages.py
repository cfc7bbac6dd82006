"""Waiting out a store outage, so that a short one never reaches a durable run's caller.

Every store call the runtime makes for a run goes through `OutageBound`: a transient
StoreError (the server is down, restarting, unreachable) is retried with backoff until
the store answers, for at most `seconds` from the first failure; then StoreOutageError
names the store and how long it waited. What retrying cannot help (a rejected record, a
fenced write, an unusable store, a closed engine) goes through at once.

A durable save needs no retry of its own: its write waits in the engine's queue, which
retries until it lands. The bound there is on how long the store has been failing while
the save waits; giving up leaves the write queued (it may still land), which is safe: the
run resumes from whatever the log holds, and a tool whose outcome did not land is in
doubt, never run again silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .._core.commits import backoff_seconds
from .._core.engine import CheckpointEngine
from .._core.errors import RecordRejectedError, StoreError, StoreOutageError, StoreUnusableError
from .._core.model import ExecutionNode
from .._core.store import Lease

logger = logging.getLogger("livingai")

T = TypeVar("T")

_MAX_DELAY = 1.0  # between tries: a restarted server is found within a second


class OutageBound:
    """Store calls for durable runs that wait out an outage of up to `seconds`."""

    def __init__(self, engine: CheckpointEngine, seconds: float) -> None:
        self.engine = engine
        self.seconds = seconds

    async def call(self, what: str, work: Callable[[], Awaitable[T]]) -> T:
        """`await work()`, tried again while the store is unreachable, up to the bound.
        `what` names the call in log lines and in the error."""
        first: float | None = None
        failures = 0
        while True:
            try:
                return await work()
            except (StoreOutageError, RecordRejectedError, StoreUnusableError):
                raise
            except StoreError as exc:
                now = time.perf_counter()
                if first is None:
                    first = now
                    logger.warning(
                        "%r: %s failed; retrying for up to %gs: %s",
                        self.engine.store,
                        what,
                        self.seconds,
                        exc,
                    )
                waited = now - first
                if waited >= self.seconds:
                    raise self.gave_up(what, waited) from exc
                failures += 1
                delay = backoff_seconds(failures, _MAX_DELAY)
                await asyncio.sleep(min(delay, self.seconds - waited))

    async def save_durably(self, node: ExecutionNode, fence: Lease | None) -> None:
        """Save `node` durably, waiting however long the commit takes while the store
        works, and up to the bound while it fails."""
        await self._wait(
            self.engine.save(node, durable=True, fence=fence), f"saving node {node.id}"
        )

    async def settle(self, execution_id: str) -> None:
        """Wait until the writes this engine queued for `execution_id` are settled, up to
        the bound while the store fails: a run taken back by its own worker (after an
        outage it gave up on) must not fence off the writes it made before. What was
        rejected or abandoned among them was logged then."""
        try:
            await self._wait(self.engine.flush(execution_id), "committing queued writes")
        except StoreOutageError:
            raise
        except StoreError:
            pass  # rejected or abandoned: each one counted and logged already

    async def _wait(self, work: Awaitable[object], what: str) -> None:
        """Await `work`, which waits in the engine's queue; give up once the store has
        failed for the bound while it waited (the write stays queued)."""
        waiting = asyncio.ensure_future(work)
        started = time.perf_counter()
        poll = min(_MAX_DELAY, self.seconds / 10)
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=poll)
                if done:
                    waiting.result()
                    return
                waited = min(self.engine.failing_for(), time.perf_counter() - started)
                if waited >= self.seconds:
                    raise self.gave_up(what, waited)
        finally:
            waiting.cancel()  # only this wait ends

    def gave_up(self, what: str, waited: float) -> StoreOutageError:
        store = repr(self.engine.store)
        return StoreOutageError(
            f"{store} was unreachable for {waited:.1f}s while {what}, longer than "
            f"store_outage_seconds={self.seconds:g}: the run stops here unfinished and "
            "resumes where it stopped when run again (recover_pending())",
            store=store,
            waited_seconds=waited,
        )
