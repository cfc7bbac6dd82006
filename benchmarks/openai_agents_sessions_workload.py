"""One OpenAI Agents SDK session benchmark run in its own process: ours or the SDK's.

Started by path, under a python that has the SDK (the bench venv, or the current one for
`--ours-only`): it imports the standard library and `agents` at the top, each system's
session class lazily. It reads one JSON argument and prints one JSON line.

The workload is the same for both systems and so is the clock: `sessions` sessions at
once, each `turns` turns; a turn is `add_items([user message, assistant message])`, then
`get_items()`, each timed as the wall time around its await. Every session object is made
and one warm-up session has done a turn (tables created, connections open) before the
clock starts. Sessions share what their users would share: ours one `CheckpointEngine`
(one store), the SDK's one Redis client or one SQLAlchemy engine (their default pools);
its SQLite sessions each name the same file, as the SDK documents.

Modes:
    run     the timed turns; prints every call's latency (ms), the wall time, and how many
            get_items calls returned the wrong items (not exactly what was added so far).
    verify  in a fresh process on the same store: each session's items, counting those
            missing (every turn's two should be there, in order).

The "spec" argument: ours {"url": an open_store URL}; the SDK's SQLite {"path": ...},
Redis {"url": ..., "key_prefix": ...}, PostgreSQL {"url": a SQLAlchemy URL,
"driver": "asyncpg" | "psycopg", "schema": a search_path or absent}.
"""

from __future__ import annotations

import asyncio
import cProfile
import importlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import agents  # type: ignore[import-not-found, unused-ignore]

WARMUP = "warmup"
USER_TEXT = (
    "Please check the status of order {order} and tell me when it ships; if it is late, "
    "find out why and whether I can change the delivery address to my office instead."
)
ASSISTANT_TEXT = (
    "Order {order} left the warehouse this morning and is due on Thursday. It was held a "
    "day for a stock check, which is why it is later than first promised. You can still "
    "change the delivery address: the carrier accepts changes until it is out for "
    "delivery. Shall I change it to your office address on file, or do you want to give "
    "me a new one? I can also ask for a delivery window if you will not be in all day."
)


def session_ids(prefix: str, sessions: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(sessions)]


def turn_items(session_id: str, turn: int) -> list[dict[str, Any]]:
    """One turn's two items, as the SDK stores them: a user message and the model's."""
    order = f"{session_id}/{turn}"
    return [
        {"role": "user", "content": USER_TEXT.format(order=order)},
        {
            "id": f"msg_{session_id}_{turn}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "text": ASSISTANT_TEXT.format(order=order),
                    "annotations": [],
                }
            ],
        },
    ]


class Sessions:
    """Makes one system's sessions on one store, and closes what they share."""

    system = ""

    async def start(self) -> None:
        """Open what the sessions share (before the clock)."""

    def make(self, session_id: str, first: bool) -> Any:
        raise NotImplementedError

    async def close(self, sessions: Sequence[Any]) -> None:
        raise NotImplementedError

    def version(self) -> str:
        metadata = importlib.import_module("importlib.metadata")
        return str(metadata.version("openai-agents"))


class Ours(Sessions):
    """LivingAISession on one CheckpointEngine over open_store(url)."""

    system = "ours"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.livingai: Any = importlib.import_module("livingai")
        module: Any = importlib.import_module("livingai.adapters.openai_agents.session")
        self.session_class = module.LivingAISession
        self.engine = self.livingai.CheckpointEngine(self.livingai.open_store(spec["url"]))

    def make(self, session_id: str, first: bool) -> Any:
        return self.session_class(self.engine, session_id)

    async def close(self, sessions: Sequence[Any]) -> None:
        for session in sessions:
            await session.close()  # the engine is given, so this closes nothing shared
        await self.engine.close()

    def version(self) -> str:
        return f"livingai {self.livingai.__version__} ({self.livingai.__file__})"


class SdkSQLite(Sessions):
    """agents.SQLiteSession, each session on the same file."""

    system = "sdk"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.path = spec["path"]

    def make(self, session_id: str, first: bool) -> Any:
        return agents.SQLiteSession(session_id, self.path)

    async def close(self, sessions: Sequence[Any]) -> None:
        for session in sessions:
            session.close()


class SdkRedis(Sessions):
    """agents.extensions.memory.RedisSession on one shared redis.asyncio client."""

    system = "sdk"

    def __init__(self, spec: dict[str, Any]) -> None:
        redis: Any = importlib.import_module("redis.asyncio")
        memory: Any = importlib.import_module("agents.extensions.memory")
        self.session_class = memory.RedisSession
        self.client = redis.Redis.from_url(spec["url"])
        self.key_prefix = spec["key_prefix"]

    def make(self, session_id: str, first: bool) -> Any:
        return self.session_class(session_id, redis_client=self.client, key_prefix=self.key_prefix)

    async def close(self, sessions: Sequence[Any]) -> None:
        await self.client.aclose()


class SdkSQLAlchemy(Sessions):
    """agents.extensions.memory.SQLAlchemySession on one shared async engine; the
    warm-up session creates the tables, the measured ones do not check again."""

    system = "sdk"

    def __init__(self, spec: dict[str, Any]) -> None:
        asyncio_ext: Any = importlib.import_module("sqlalchemy.ext.asyncio")
        memory: Any = importlib.import_module("agents.extensions.memory")
        self.session_class = memory.SQLAlchemySession
        connect_args: dict[str, Any] = {}
        schema = spec.get("schema")
        if schema and spec["driver"] == "asyncpg":
            connect_args["server_settings"] = {"search_path": schema}
        elif schema:
            connect_args["options"] = f"-c search_path={schema}"
        self.engine = asyncio_ext.create_async_engine(spec["url"], connect_args=connect_args)
        self.driver = spec["driver"]

    def make(self, session_id: str, first: bool) -> Any:
        return self.session_class(session_id, engine=self.engine, create_tables=first)

    async def close(self, sessions: Sequence[Any]) -> None:
        await self.engine.dispose()

    def version(self) -> str:
        metadata = importlib.import_module("importlib.metadata")
        return (
            f"{super().version()}, SQLAlchemy {metadata.version('sqlalchemy')}, "
            f"{self.driver} {metadata.version(self.driver)}"
        )


def sessions_for(system: str, store: str, spec: dict[str, Any]) -> Sessions:
    if system == "ours":
        return Ours(spec)
    if store == "sqlite":
        return SdkSQLite(spec)
    if store == "redis":
        return SdkRedis(spec)
    return SdkSQLAlchemy(spec)


async def converse(
    session: Any, session_id: str, turns: int, add_ms: list[float], get_ms: list[float]
) -> int:
    """One session's turns, each call timed; returns how many reads were wrong."""
    wrong = 0
    expected: list[dict[str, Any]] = []
    for turn in range(turns):
        items = turn_items(session_id, turn)
        expected += items
        started = time.perf_counter()
        await session.add_items(items)
        added = time.perf_counter()
        got = await session.get_items()
        done = time.perf_counter()
        add_ms.append((added - started) * 1000.0)
        get_ms.append((done - added) * 1000.0)
        if got != expected:
            wrong += 1
    return wrong


async def run(args: dict[str, Any]) -> dict[str, Any]:
    """A warm-up turn outside the clock, then every session's turns at once (under
    cProfile if asked)."""
    maker = sessions_for(args["system"], args["store"], args["spec"])
    await maker.start()
    warmup = maker.make(f"{args['prefix']}-{WARMUP}", True)
    await warmup.add_items(turn_items(WARMUP, 0))
    await warmup.get_items()
    ids = session_ids(args["prefix"], args["sessions"])
    sessions = [maker.make(sid, False) for sid in ids]
    add_ms: list[float] = []
    get_ms: list[float] = []
    profile = cProfile.Profile() if args.get("profile") else None
    if profile is not None:
        profile.enable()
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            converse(s, sid, args["turns"], add_ms, get_ms)
            for s, sid in zip(sessions, ids, strict=True)
        ),
        return_exceptions=True,
    )
    total_s = time.perf_counter() - started
    if profile is not None:
        profile.disable()
        profile.dump_stats(args["profile"])
    await maker.close([warmup, *sessions])
    failures = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return {
        "version": maker.version(),
        "total_s": total_s,
        "add_ms": add_ms,
        "get_ms": get_ms,
        "wrong": sum(r for r in results if isinstance(r, int)),
        "failures": failures,
    }


async def verify(args: dict[str, Any]) -> dict[str, Any]:
    """Every session read again in a fresh process: items missing, and sessions whose
    items are not exactly the ones added, in order."""
    maker = sessions_for(args["system"], args["store"], args["spec"])
    await maker.start()
    ids = session_ids(args["prefix"], args["sessions"])
    sessions = [maker.make(sid, False) for sid in ids]
    lost = mismatched = 0
    for session, sid in zip(sessions, ids, strict=True):
        expected = [item for turn in range(args["turns"]) for item in turn_items(sid, turn)]
        got = await session.get_items()
        lost += sum(1 for item in expected if item not in got)
        mismatched += got != expected  # out of order, or items that were never added
    await maker.close(sessions)
    return {"lost": lost, "mismatched": mismatched}


def main(argv: Sequence[str]) -> None:
    args = json.loads(argv[1])
    agents.set_tracing_disabled(True)
    work = run if args["mode"] == "run" else verify
    print(json.dumps(asyncio.run(work(args))), flush=True)


if __name__ == "__main__":
    main(sys.argv)
