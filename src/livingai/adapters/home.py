"""The event loop an adapter's engine lives on, for frameworks that call in from threads.

An engine belongs to the loop it is first used on. Frameworks that are sync at heart
(CrewAI runs its tools and LLM calls on threads of its own; LangGraph's sync API) call
an adapter from threads that have no loop, or from another loop: `Home` runs the work on
the engine's loop and waits for it there, and starts a loop of its own in a daemon
thread when the engine was never used from async code.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from livingai import ConfigError, WrongLoopError

T = TypeVar("T")


class Home:
    """Where the engine's work runs. `name` names the thread of its own, and the
    adapter in errors."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def settle(self) -> None:
        """Called on a running loop: make it the home when there is none yet."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work()` on the home loop, awaited from any loop (the caller's becomes the
        home when there is none yet)."""
        loop = asyncio.get_running_loop()
        self.settle()
        if self.loop is loop:
            return await work()
        return await asyncio.wrap_future(self.submit(work))

    def wait(self, work: Callable[[], Awaitable[T]], called: str, instead: str) -> T:
        """`work()` on the home loop, from sync code (the method `called`): refused on a
        running loop's thread, WrongLoopError saying what to do `instead` (waiting there
        would block the loop that has to do the work); a loop thread of its own when there
        is no home."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise WrongLoopError(
                f"{called} was called from a running event loop's thread, where it would "
                f"deadlock; {instead}"
            )
        self.start()  # a no-op when there is a home; several threads may call at once
        return self.submit(work).result()

    def start(self) -> None:
        """Make a loop thread of its own the home, unless there is one (a sync API that
        may be called from any loop's thread starts it first: see `block`)."""
        with self._starting:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self.loop.run_forever, name=self.name, daemon=True
                )
                self._thread.start()

    def block(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work()` on the home loop, the caller's thread blocked until it is done, even
        a running loop's (a sync API called from async code blocks its loop, as a sync
        database driver would): for a home of its own (`start`), never the caller's."""
        if self.on_home_thread():
            raise WrongLoopError(
                f"{self.name}: called from the loop it runs its work on, where it would deadlock"
            )
        return self.submit(work).result()

    def on_home_thread(self) -> bool:
        """Whether the caller runs on the home loop's own thread."""
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def submit(self, work: Callable[[], Awaitable[T]]) -> Future[T]:
        """`work()` scheduled on the home loop, from any thread."""
        if self.loop is None or self.loop.is_closed():
            raise ConfigError(
                f"{self.name}: the event loop its engine lives on has closed; make it inside "
                "the function asyncio.run runs, or use it from sync code only"
            )
        return asyncio.run_coroutine_threadsafe(_awaited(work), self.loop)

    def stop(self) -> None:
        """Stop the loop thread of its own, if one was started."""
        if self._thread is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self._thread = None
            self.loop.close()


def _awaited(work: Callable[[], Awaitable[T]]) -> Coroutine[Any, Any, T]:
    async def run() -> T:
        return await work()

    return run()
