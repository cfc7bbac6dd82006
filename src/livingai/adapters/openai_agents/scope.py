"""Which execution the SDK is running in, for the models and tools it calls (a context
variable, so parallel tool calls and agent-as-tool runs in their own tasks see it too)."""

from __future__ import annotations

from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from livingai import ExecutionNode, Lease, LivingAIError, Run

if TYPE_CHECKING:
    from .adapter import OpenAIAgentsAdapter


@dataclass
class Scope:
    """The execution the SDK is running in, for the models and tools it calls: a durable
    run, or (run None) a finished one read back from its log."""

    adapter: OpenAIAgentsAdapter
    execution_id: str
    run: Run | None
    replay_of: str | None
    calls: Counter[str] = field(default_factory=Counter)  # model calls made, by digest
    models_from: str | None = None  # a replay serving recorded model turns: from where
    # The execution's nodes as read when the scope opened (under the run's lease): its
    # calls are looked up here, not one read each in the store.
    known: dict[str, ExecutionNode] = field(default_factory=dict)

    @classmethod
    async def open(
        cls, adapter: OpenAIAgentsAdapter, execution_id: str, run: Run | None, replay_of: str | None
    ) -> Scope:
        nodes = await adapter.engine.list_nodes(execution_id)
        return cls(adapter, execution_id, run, replay_of, known={n.id: n for n in nodes})

    @property
    def fence(self) -> Lease | None:
        return None if self.run is None else self.run.lease


current: ContextVar[Scope | None] = ContextVar("livingai_openai_agents", default=None)


@dataclass
class Speaker:
    """Whose turn it is in one run loop of the SDK: the agent its `on_llm_start` hook
    named last (the hook runs in a task of its own, so it writes here, not to a context
    variable). Each run loop gets its own: the top one, and each agent run as a tool."""

    agent: str | None = None


speaker: ContextVar[Speaker | None] = ContextVar("livingai_openai_agents_speaker", default=None)


def livingai_cause(exc: BaseException) -> LivingAIError | None:
    """The livingai error the SDK wrapped as its own (a tool in doubt, a lost lease, an
    outage, a replay that diverged): it decides how the durable run ends, so it goes
    through as itself."""
    seen: BaseException | None = exc.__cause__
    while seen is not None:
        if isinstance(seen, LivingAIError):
            return seen
        seen = seen.__cause__
    return None
