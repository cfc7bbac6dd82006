"""FrameworkAdapter: the shell every framework adapter shares, so that each writes only
its framework's translation. It holds the runtime the adapter records into, the price
table, the recorded tool results for MOCK_TOOLS, the loop sync callers run on (Home), the
hand-back of the framework's own result from the durable function to its caller, and the
same adapter over another runtime (`livingai recover --agent module:function` and the web
UI run a registered function under their own runtime)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Self

from livingai import CheckpointEngine, PriceTable, Runtime

from .home import Home
from .recordings import RecordedTools, prices_of, runtime_of


class FrameworkAdapter:
    """The shared shell (see the module docstring); a subclass names its loop's thread."""

    thread_name: ClassVar[str] = "livingai-adapter"  # the name of the Home loop's thread

    def __init__(
        self, source: Runtime | CheckpointEngine, *, prices: PriceTable | None = None
    ) -> None:
        self.runtime = runtime_of(source, type(self).__name__)
        self.prices = prices_of(self.runtime, prices)
        self.recordings = RecordedTools(self.runtime.engine)
        self._home = Home(self.thread_name)  # the sync entry point's loop
        self._handed: dict[str, Any] = {}  # by execution id, as the durable function hands it
        self._over: dict[int, Self] = {}  # for another runtime, by its id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.runtime.engine!r})"

    @property
    def engine(self) -> CheckpointEngine:
        return self.runtime.engine

    def close(self) -> None:
        """Close the runtime, its engine and store, on the loop they live on (the sync
        entry point's, when only it was used), from sync code; `aclose` from async code."""
        name = type(self).__name__
        self._home.wait(self.runtime.close, f"{name}.close()", "use `await adapter.aclose()`")
        self._home.stop()

    async def aclose(self) -> None:
        """`close` from async code."""
        await self._home.run(self.runtime.close)
        await asyncio.to_thread(self._home.stop)

    def _for(self, runtime: Runtime) -> Self:
        """This adapter over `runtime`, the one running the durable function: its run's
        records go through that runtime and engine. It shares this adapter's prices and
        whatever `_adopt` shares."""
        if runtime is self.runtime:
            return self
        found = self._over.get(id(runtime))
        if found is None or found.runtime is not runtime:
            found = type(self)(runtime, prices=self.prices)
            self._adopt(found)
            self._over[id(runtime)] = found
        return found

    def _adopt(self, other: Self) -> None:
        """What this adapter gives its copy over another runtime, beyond the prices."""

    def _hand(self, execution_id: str, value: Any) -> None:
        """From the durable function: the framework's own result, for `_durably`'s caller."""
        self._handed[execution_id] = value

    async def _durably(
        self,
        durable: Callable[..., Awaitable[Any]],
        argument: Any,
        execution_id: str,
        stopped: type[BaseException] | tuple[type[BaseException], ...] = (),
    ) -> tuple[bool, Any]:
        """Run `durable(argument)` as execution `execution_id`: (True, what it handed
        back), or (False, None) when the execution had finished before and nothing ran. A
        `stopped` error raised after the function handed its result back (a run that
        stopped for a human) is not raised."""
        self._handed.pop(execution_id, None)
        try:
            try:
                await self.runtime.run(durable, argument, execution_id=execution_id)
            except stopped:
                if execution_id not in self._handed:
                    raise
            if execution_id in self._handed:
                return True, self._handed[execution_id]
        finally:
            self._handed.pop(execution_id, None)
        return False, None
