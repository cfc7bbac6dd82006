"""A session given to an adapter run (`adapter.run(..., session=...)`), as the run sees it.

The runner reads the session's history into the model's input and adds the turn's items
to it. Run again after a crash, the same session holds the items the crashed attempt
added, so the model's input would differ from the recorded one: every recorded turn
would be asked (and paid) for again, and the input added twice. So in an adapter run
each session call is a step of the run, at `<execution>/oai:session:<call>:<n>` (its
n-th call of that kind): a recorded `get_items` returns the items it read then, and a
recorded `add_items`, `pop_item` or `clear_session` is not done again. A call cut off by
a crash between the session's write and its record is made again (at least once, like a
step). Sessions that compact server-side (OpenAI's conversations and compaction-aware
ones) are passed on unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agents.items import TResponseInputItem
from agents.memory import (
    OpenAIConversationsSession,
    Session,
    SessionABC,
    is_openai_responses_compaction_aware_session,
)

from .scope import Scope


def recorded_session(session: Any, scope: Scope) -> Any:
    """`session` as a run in `scope` uses it (see the module docstring)."""
    if session is None or isinstance(session, OpenAIConversationsSession | RecordedSession):
        return session
    if is_openai_responses_compaction_aware_session(session):
        return session
    return RecordedSession(session, scope)


class RecordedSession(SessionABC):
    """`inner`, each call a step of the run in `scope`."""

    def __init__(self, inner: Session, scope: Scope) -> None:
        self.inner = inner
        self.scope = scope
        self.session_id = inner.session_id
        self.session_settings = inner.session_settings

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        items: list[TResponseInputItem] = await self._step(
            "get_items", {"limit": limit}, lambda: self.inner.get_items(limit)
        )
        return items

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        await self._step("add_items", {"items": items}, lambda: self.inner.add_items(items))

    async def pop_item(self) -> TResponseInputItem | None:
        popped: TResponseInputItem | None = await self._step("pop_item", {}, self.inner.pop_item)
        return popped

    async def clear_session(self) -> None:
        await self._step("clear_session", {}, self.inner.clear_session)

    async def _step(
        self, call: str, arguments: dict[str, Any], do: Callable[[], Awaitable[Any]]
    ) -> Any:
        scope = self.scope
        scope.calls[f"session:{call}"] += 1
        execution_id = scope.execution_id

        async def once(**_: Any) -> Any:
            return await do()

        return await scope.adapter.runtime.call_tool(
            execution_id,
            f"{execution_id}/oai:session:{call}:{scope.calls[f'session:{call}']}",
            f"session.{call}",
            once,
            kwargs={"session_id": self.session_id, **arguments},
            at_least_once=True,
            parent_id=f"{execution_id}/run",
            metadata={"kind": "session", "session_id": self.session_id},
            known=scope.known,
            fence=scope.fence,
        )
