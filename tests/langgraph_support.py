"""LangGraph test helpers: the stores a LivingAISaver runs on (each with the URL that names
the same data, for LivingAISaver.from_url and child processes), and chat models that need
no API key and no network.

The servers are those of tests/services.py: without one the tests of that store skip and
say why, and under LIVINGAI_REQUIRE_SERVICES=1 such a skip is a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from livingai import CheckpointStore, SQLiteStore
from tests.services import POSTGRES_DSN, REDIS_URL, need_server, unique_name

SAVER_KINDS = ["sqlite", "redis", "postgres", "tiered"]


@dataclass(frozen=True)
class Backend:
    """Where a saver keeps its checkpoints: `store()` opens a new store object over the
    data (a LivingAISaver over it closes it); `url` names the same data, for from_url."""

    kind: str
    url: str
    store: Callable[[], CheckpointStore]


def _with_option(url: str, name: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


def _wrap(
    kind: str, url: str, factories: Iterator[Callable[[], CheckpointStore]]
) -> Iterator[Backend]:
    """The one factory of a cleaning-up factory generator, as a Backend; the generator is
    closed (so it cleans up) when this one is."""
    try:
        yield Backend(kind, url, next(factories))
    finally:
        close = getattr(factories, "close", None)
        if close is not None:
            close()


def backend(kind: str, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty backend of one kind (file, key prefix or schema); removed after."""
    if kind == "sqlite":
        path = tmp_path / "langgraph.db"
        yield Backend(kind, f"sqlite:///{path}", lambda: SQLiteStore(path))
    elif kind == "redis":
        need_server("Redis", REDIS_URL, 6379)
        from tests.redis_support import redis_factory

        prefix = unique_name("livingai-lg")
        yield from _wrap(
            kind, _with_option(REDIS_URL, "prefix", prefix), redis_factory(REDIS_URL, prefix)
        )
    elif kind == "postgres":
        need_server("PostgreSQL", POSTGRES_DSN, 5432)
        from tests.postgres_support import postgres_factory

        schema = unique_name("livingai_lg")
        url = _with_option(POSTGRES_DSN, "schema", schema)
        yield from _wrap(kind, url, postgres_factory(POSTGRES_DSN, schema))
    elif kind == "tiered":
        need_server("Redis", REDIS_URL, 6379)
        need_server("PostgreSQL", POSTGRES_DSN, 5432)
        from tests.tiered_support import tiered_factory

        name = unique_name("livingai_lg")
        hot = _with_option(REDIS_URL, "prefix", name)
        cold = _with_option(POSTGRES_DSN, "schema", name)
        url = f"tiered:{hot}|{cold}"
        yield from _wrap(kind, url, tiered_factory(REDIS_URL, POSTGRES_DSN, name))
    else:
        raise AssertionError(f"unknown store kind {kind!r}")


# -- chat models -------------------------------------------------------------------------


def _reply(message: BaseMessage) -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=message)])


class EchoModel(BaseChatModel):
    """Answers the last human message with `echo #<n>: <text>`, n counting the human
    messages it was shown: a reply tells how much of the conversation the model saw."""

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        humans = [m for m in messages if isinstance(m, HumanMessage)]
        assert humans, "the echo model was given no human message"
        return _reply(AIMessage(content=f"echo #{len(humans)}: {humans[-1].content}"))


TOOL_NAME = "append_line"


class ToolCallingModel(BaseChatModel):
    """Calls the `append_line` tool once, then answers with the tool's result."""

    line: str = "booked"

    @property
    def _llm_type(self) -> str:
        return "tool-calling"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if results:
            return _reply(AIMessage(content=f"done: {results[-1].content}"))
        call = {"name": TOOL_NAME, "args": {"line": self.line}, "id": "call-1", "type": "tool_call"}
        return _reply(AIMessage(content="", tool_calls=[call]))


def contents(messages: Sequence[BaseMessage]) -> list[tuple[str, str]]:
    """(type, text) of each message: what a conversation says, without the ids."""
    return [(m.type, str(m.content)) for m in messages]
