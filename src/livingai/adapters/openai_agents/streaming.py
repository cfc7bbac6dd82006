"""What adapter.run_streamed returns: the SDK's events as they happen, from a durable run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from agents import (
    RunResultStreaming,
    StreamEvent,
)


class StreamedRun:
    """What `adapter.run_streamed` returns: a durable run around the SDK's
    RunResultStreaming (`result`, once the run has started it; its other attributes,
    `new_items`, `last_agent`, `to_input_list()` and so on, are read through this object
    too).

    - `stream_events()`: the SDK's events as they happen; it ends once the run's end is
      recorded, raising what the run raised (as `adapter.run` raises it: a livingai
      error the SDK wrapped, InDoubtError say, as itself). One reader, as the SDK's.
    - `final_output`: the agent's output once the run has ended (None before).
    - `cancel()`: stops the run where it is; it stays unfinished, and running the same
      execution id again resumes it.
    """

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        self.result: RunResultStreaming | None = None
        self._events: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "complete" if self.is_complete else "running"
        return f"StreamedRun({self.execution_id!r}, {state})"

    def __getattr__(self, name: str) -> Any:
        result = self.__dict__.get("result")
        if result is None or name.startswith("__"):
            raise AttributeError(
                f"StreamedRun {self.__dict__.get('execution_id')!r} has no attribute "
                f"{name!r}" + ("" if result is not None else " (the SDK's run has not started)")
            )
        return getattr(result, name)

    @property
    def is_complete(self) -> bool:
        """Whether the durable run has ended (and its end is recorded)."""
        return self._task is not None and self._task.done()

    @property
    def final_output(self) -> Any:
        if not self.is_complete or self.result is None:
            return None
        return self.result.final_output

    async def stream_events(self) -> AsyncIterator[StreamEvent]:
        while (event := await self._events.get()) is not None:
            yield event
        self._events.put_nowait(None)  # the end, for a later reader too
        if self._task is not None and not self._task.cancelled():
            self._task.result()  # what the run raised

    def cancel(self) -> None:
        """Stop the run where it is: it stays unfinished, to resume."""
        if self._task is not None:
            self._task.cancel()

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.ensure_future(work)
        self._task.add_done_callback(lambda _: self._events.put_nowait(None))

    def put(self, event: StreamEvent) -> None:
        self._events.put_nowait(event)
