"""A background thread that runs calls in order: one per database connection."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class Worker:
    """One daemon thread running calls in order: it owns one connection.

    A daemon thread, unlike an executor's, still runs at interpreter exit, so an engine
    can flush what is queued from an atexit hook.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._run(self._calls.get()):
            pass

    def _run(self, call: tuple[Callable[[], Any], Future[Any]] | None) -> bool:
        """Run one call; False at stop(). Its own frame, so that nothing of the last call
        (a closure over the store) stays referenced while the thread waits for the next."""
        if call is None:
            return False
        fn, future = call
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)
        return True

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._calls.put((fn, future))
        return future

    def stop(self) -> None:
        self._calls.put(None)
