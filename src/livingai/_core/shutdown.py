"""What happens to queued writes when the process ends without close().

- The event loop ends (asyncio.run returns): each commit queue's task commits what is
  queued as it is cancelled (commits.py), within its `exit_flush_seconds`.
- The interpreter exits with a loop left open: an atexit hook does the same.
- SIGTERM (docker stop, systemd, Kubernetes): when this process handles signals in the
  usual way (the main thread runs the loop and SIGTERM has its default disposition), an
  engine created with `handle_sigterm=True` (the default) installs a handler on its loop.
  It commits every queue of that loop within `exit_flush_seconds`, abandons (counts and
  logs, naming every node) what is left whatever ended the flush (its bound, an error,
  the loop ending and cancelling it), flushes the log handlers (nothing runs after the
  signal, atexit neither), then restores the default disposition and sends itself
  SIGTERM again: the process ends as it would have, with the usual status. A second
  SIGTERM meanwhile changes nothing.
- SIGKILL: nothing runs. Saves that returned True (or that `flush()` waited for) are in
  the store; writes still queued are lost.

In every case but SIGKILL, a write that could not be stored is counted and logged.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterable

from .commits import CommitQueue, live_queues
from .errors import StoreError

logger = logging.getLogger("livingai")

_handled_loops: set[int] = set()  # ids of the loops our SIGTERM handler is installed on
# loop id -> its SIGTERM flush: held here (the loop keeps only a weak reference to a task)
_flushing: dict[int, asyncio.Task[None]] = {}


def handle_sigterm(loop: asyncio.AbstractEventLoop) -> bool:
    """Install the SIGTERM flush on `loop` (the running one), once; False when this
    process does not handle SIGTERM in the usual way, so it is left alone."""
    if id(loop) in _handled_loops:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False  # the application (or a framework) handles it: theirs to do
    try:
        loop.add_signal_handler(signal.SIGTERM, _on_sigterm, loop)
    except (NotImplementedError, RuntimeError, ValueError):  # not a Unix loop
        return False
    _handled_loops.add(id(loop))
    return True


def _on_sigterm(loop: asyncio.AbstractEventLoop) -> None:
    if id(loop) in _flushing:
        logger.warning("SIGTERM again: still storing the queued writes")
        return
    logger.warning("SIGTERM: storing the queued writes before the process ends")
    _flushing[id(loop)] = loop.create_task(_flush_then_die(loop), name="livingai-sigterm")


async def _flush_then_die(loop: asyncio.AbstractEventLoop) -> None:
    def mine() -> list[CommitQueue]:  # closed ones too: a close() may be under way
        return [q for q in list(live_queues) if q.loop is loop]

    bound = max((q.exit_flush_seconds for q in mine()), default=0.0)
    why = "the process received SIGTERM before they were stored"
    try:
        async with asyncio.timeout(bound):
            # Twice: an engine's commits may queue records in a tiered store's queue.
            for _ in range(2):
                for queue in mine():
                    with contextlib.suppress(StoreError):  # rejected or abandoned: logged
                        await queue.flush()
    except TimeoutError:
        why = f"exit_flush_seconds ({bound}s) ran out after SIGTERM"
    except BaseException as exc:  # cancelled (the loop is ending), or a bug: say so
        why = f"the SIGTERM flush was cut short: {exc!r}"
    finally:
        try:
            _abandon(mine(), why)
        finally:
            _die(loop)


def _die(loop: asyncio.AbstractEventLoop) -> None:
    """End the process as SIGTERM does, once what was logged is written out."""
    try:
        _handled_loops.discard(id(loop))
        loop.remove_signal_handler(signal.SIGTERM)
        logging.shutdown()  # the ERROR lines naming what was lost must reach their files
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _abandon(queues: Iterable[CommitQueue], why: str) -> None:
    """Give up what each queue still holds (counted, every node named at ERROR), even
    when giving one of them up raises."""
    for queue in queues:
        try:
            queue.abandon(why)
        except Exception:
            logger.exception("%r: giving up its queued writes failed", queue.owner)


@atexit.register
def _flush_queues_at_exit() -> None:
    """A loop stopped without cancelling its tasks leaves writes queued (a close() cut
    short too): store them now, within exit_flush_seconds, or count and log them. Never
    silent, whatever raises. An engine's flush may queue records in a tiered store's
    queue, so this goes round until nothing is left."""
    try:
        for _ in range(3):
            queues = [q for q in list(live_queues) if q.pending]
            if not queues:
                return
            for queue in queues:
                try:
                    loop = queue.loop
                    if loop is not None and not loop.is_closed() and not loop.is_running():
                        loop.run_until_complete(queue.stop())
                    else:
                        asyncio.run(queue.flush_at_exit())
                except Exception as exc:
                    queue.abandon(f"exit flush failed: {exc!r}")
    finally:
        _abandon(list(live_queues), "the process exited before they were stored")
