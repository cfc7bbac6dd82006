"""Safe (de)serialisation of LangGraph values.

LangGraph's default serializer rebuilds any class a stored value names, and savers that
fall back to pickle run any code a stored value carries: whoever can write to the
database can run code in the agent. Here nothing is rebuilt unless it is on an
allowlist (LangGraph's own safe types, which cover LangChain messages and documents,
plus the types the user registers), pickle is never read or written, and a value that
names a type off the list is an error rather than a silently different value.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from typing import Any

from langgraph.checkpoint.serde.event_hooks import SerdeEvent, register_serde_event_listener
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

# The kinds of value this serializer writes, hence the only ones it reads.
READABLE = ("null", "bytes", "bytearray", "msgpack")

_blocked: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "livingai_langgraph_blocked", default=None
)
_listening = False


def _on_serde_event(event: SerdeEvent) -> None:
    found = _blocked.get()
    if found is not None and event["kind"] in ("msgpack_blocked", "msgpack_method_blocked"):
        name = f"{event['module']}.{event['name']}"
        found.append(f"{name}.{event['method']}" if "method" in event else name)


class UnsafeValueError(ValueError):
    """A stored value names a type that is not on the allowlist, or is of a kind this
    serializer never writes (pickle, say)."""


class SafeSerializer:
    """LangGraph's msgpack format, read with an allowlist and never with pickle."""

    def __init__(self, allowed_types: Iterable[type | tuple[str, str]] = ()) -> None:
        global _listening
        allowed = list(allowed_types)  # types, or (module, name) pairs
        # None: LangGraph's built-in safe types only; a list adds the user's.
        self._inner = JsonPlusSerializer(
            pickle_fallback=False, allowed_msgpack_modules=allowed or None
        )
        self.allowed = tuple(allowed)
        if not _listening:
            register_serde_event_listener(_on_serde_event)
            _listening = True

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        return self._inner.dumps_typed(obj)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kind = data[0]
        if kind not in READABLE:
            raise UnsafeValueError(
                f"a value stored as {kind!r}, which is never read (only {', '.join(READABLE)})"
            )
        found: list[str] = []
        token = _blocked.set(found)
        try:
            value = self._inner.loads_typed(data)
        finally:
            _blocked.reset(token)
        if found:
            names = ", ".join(sorted(set(found)))
            raise UnsafeValueError(
                f"the value names {names}, which is not on the allowlist; if it is your "
                "own type, register it: LivingAISaver(..., allowed_types=[YourType])"
            )
        return value
