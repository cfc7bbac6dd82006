"""What happens to queued writes when the process ends without close().

- The event loop ends (asyncio.run returns): each commit queue's task commits what is
  queued as it is cancelled (commits.py), within its `exit_flush_seconds`.
- The interpreter exits with a loop left open: an atexit hook does the same.
- SIGTERM (docker stop, systemd, Kubernetes): when this process handles signals in the
  usual way (the main thread runs the loop and SIGTERM has its default disposition), an
  engine created with `handle_sigterm=True` (the default) installs a handler on its loop.
  It commits every queue of that loop within `exit_flush_seconds`, abandons (counts and
  logs) what is left, then restores the default disposition and sends itself SIGTERM
  again: the process ends as it would have, with the usual status.
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

from .commits import CommitQueue, live_queues
from .errors import StoreError

logger = logging.getLogger("livingai")

_handled_loops: set[int] = set()  # ids of the loops our SIGTERM handler is installed on


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
    logger.warning("SIGTERM: storing the queued writes before the process ends")
    loop.create_task(_flush_then_die(loop), name="livingai-sigterm")


async def _flush_then_die(loop: asyncio.AbstractEventLoop) -> None:
    def mine() -> list[CommitQueue]:
        return [q for q in list(live_queues) if q.loop is loop and not q.closed]

    bound = max((q.exit_flush_seconds for q in mine()), default=0.0)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(bound):
                # Twice: an engine's commits may queue records in a tiered store's queue.
                for _ in range(2):
                    for queue in mine():
                        with contextlib.suppress(StoreError):  # abandoned: logged already
                            await queue.flush()
        for queue in mine():
            queue.abandon("the process received SIGTERM before they were stored")
    finally:
        _handled_loops.discard(id(loop))
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


@atexit.register
def _flush_queues_at_exit() -> None:
    """A loop stopped without cancelling its tasks leaves writes queued: store them now,
    within exit_flush_seconds, or count and log them. Never silent. An engine's flush may
    queue records in a tiered store's queue, so this goes round until nothing is left."""
    for _ in range(3):
        queues = [q for q in list(live_queues) if q.pending and not q.closed]
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
    for queue in list(live_queues):
        if not queue.closed:
            queue.abandon("the process exited before they were stored")
