"""What every request of one app shares: the runtime over the store, the agents it may
run, the guard of its actions, the runs it started in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from livingai import CheckpointEngine, Runtime, open_store, scrub_url

from .auth import Guard

logger = logging.getLogger("livingai.web")

Agent = Callable[..., Any]


@dataclass
class Ui:
    """One app's state (`app.state.ui`); `runtime` is set while the app is running."""

    store_url: str
    guard: Guard
    agents: dict[str, Agent]
    live_seconds: float
    runtime: Runtime | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def masked_store(self) -> str:
        return scrub_url(self.store_url, self.store_url)

    def scrub(self, text: str) -> str:
        """`text` with no trace of the store URL's passwords."""
        return scrub_url(text, self.store_url)

    def open_runtime(self) -> Runtime:
        """The runtime the lifespan opened; opened here when the lifespan did not run (an
        app mounted in another one, whose lifespan does not run a mounted app's)."""
        if self.runtime is None:
            self.runtime = self.new_runtime()
        return self.runtime

    def new_runtime(self) -> Runtime:
        runtime = Runtime(CheckpointEngine(open_store(self.store_url)))
        for agent in self.agents.values():
            runtime.agent(agent)
        return runtime

    def start(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `work` in the background (a resumed run): kept until it ends, its
        failure logged (it is recorded in the store anyway)."""
        task = asyncio.create_task(work, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.info("%s ended with %s", task.get_name(), self.scrub(repr(task.exception())))

    async def stop_tasks(self, seconds: float) -> None:
        """Let background runs finish for `seconds`, then cancel them: a cancelled run is
        left unfinished in the store, to be resumed."""
        if not self.tasks:
            return
        _, late = await asyncio.wait(set(self.tasks), timeout=seconds)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(BaseException):
                await task


def ui_of(request: Request) -> Ui:
    ui: Ui = request.app.state.ui
    return ui
