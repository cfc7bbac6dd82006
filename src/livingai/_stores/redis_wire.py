"""How RedisStore's script calls reach Redis: over a connection pool to one server, or
through redis-py's RedisCluster to the primary of a bucket's slot. Either binds its
connections to the event loop that first uses it and opens new ones on another loop
(asyncio.run called twice, the engine's exit flush).

One server (`Standalone`):
- a call is EVALSHA, falling back to EVAL once the server has forgotten the script
  (after a restart or SCRIPT FLUSH);
- it goes to the socket in pieces of at most 256 KiB, so a batch of large checkpoints
  never holds the event loop for long while it is copied out;
- connections come from a `BlockingConnectionPool`: past `max_connections`, callers
  wait for a free connection (up to POOL_WAIT_SECONDS) instead of failing;
- a call whose connection breaks is sent again once on a fresh connection (every script
  is safe to repeat).

A cluster (`Cluster`): redis-py routes each call by its one key (the bucket's prefix,
KEYS[1]) to the primary serving that slot, follows MOVED and ASK redirections while
slots move, retries TRYAGAIN, and finds the new primary after a failover. A script on a
slot that is being migrated stops before it writes (redis_index.PROBE) and is sent again
here until the migration ends, for up to MIGRATION_WAIT_SECONDS.

Either acknowledges a batch to `replicas` replicas when asked: CONFIRM (every version is
on this primary, then one write) and `WAIT replicas timeout` on the same connection.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, Protocol, cast

from .._core.extras import require
from . import redis_keys as keys

POOL_WAIT_SECONDS = 30.0  # a caller waits this long for a free connection
CONNECT_TIMEOUT_SECONDS = 3.0  # these two can be overridden in the URL:
SOCKET_TIMEOUT_SECONDS = 5.0  # ?socket_connect_timeout=..&socket_timeout=.. (each read
# or write on the socket, not a whole call)
RECONNECT_RETRIES = 1  # a call on a dropped connection is sent again once
MIGRATION_WAIT_SECONDS = 30.0  # a call on a slot being migrated is retried this long
# What such a call fails with: the script's first read refused (redis_index.PROBE), or
# redis-py's redirections going round (an ASKING that reached another connection)
MIGRATING = ("non local key", "TRYAGAIN", "TTL exhausted")


@functools.cache
def redis_py() -> SimpleNamespace:
    """redis-py, imported on first use: the core never imports it."""
    asyncio_redis = require("redis.asyncio", "redis")
    return SimpleNamespace(
        Redis=asyncio_redis.Redis,
        BlockingConnectionPool=asyncio_redis.BlockingConnectionPool,
        RedisCluster=require("redis.asyncio.cluster", "redis").RedisCluster,
        PipelineCommand=require("redis.asyncio.cluster", "redis").PipelineCommand,
        Retry=require("redis.asyncio.retry", "redis").Retry,
        Backoff=require("redis.backoff", "redis").ExponentialWithJitterBackoff,
        errors=require("redis.exceptions", "redis"),
    )


class Wire(Protocol):
    """What RedisStore needs of a way to Redis."""

    def check(self) -> None:
        """Build a client now (nothing connects): a bad URL or option fails here."""

    async def call(self, bucket: str | None, script: keys.Script, args: Sequence[keys.Arg]) -> Any:
        """One script call; bucket: KEYS[1] on a cluster, None on one server."""

    async def call_many(
        self, calls: Sequence[tuple[str, keys.Script, Sequence[keys.Arg]]]
    ) -> list[Any]:
        """Several calls, each (bucket, script, args), at once; their replies in order."""

    async def acknowledge(
        self, bucket: str | None, args: Sequence[keys.Arg], replicas: int, timeout_ms: int
    ) -> tuple[int, int]:
        """CONFIRM with `args`, then WAIT, on one connection: (its reply, replicas)."""

    async def config(self, name: str) -> object:
        """CONFIG GET name, as the server replies (of one node, on a cluster)."""

    async def close(self) -> None: ...


class _Client(Protocol):
    connection_pool: Any

    async def execute_command(self, *args: Any, **options: Any) -> Any: ...

    async def aclose(self, close_connection_pool: bool | None = None) -> None: ...


class Dropped(Exception):
    """A connection broke during a call (not while connecting): worth one more try."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _PerLoop:
    """A client per event loop: a pool's connections belong to the loop that made them."""

    def __init__(self) -> None:
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # One left on a closed loop cannot be closed any more; its sockets go with it.
            self._client = self._open()
            self._loop = loop
        return self._client

    def _open(self) -> Any:
        raise NotImplementedError

    def _taken(self) -> Any:
        """The client to close now (one of this loop), forgotten either way."""
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is not None and loop is asyncio.get_running_loop():
            return client
        return None


class Standalone(_PerLoop):
    """One Redis server (or a replicated one), over a BlockingConnectionPool; or a
    redis.asyncio.Redis passed in, used as it is and never closed."""

    def __init__(
        self, url: str, options: dict[str, Any], given: Any = None, max_connections: int = 64
    ) -> None:
        super().__init__()
        self.url = url  # with the password: only ever handed to redis-py
        self.options = options
        self.given = given
        self.max_connections = max_connections

    def check(self) -> None:
        if self.given is None:
            self.pool()

    def pool(self) -> Any:
        redis = redis_py()
        pool = redis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=POOL_WAIT_SECONDS,
            retry=redis.Retry(redis.Backoff(cap=0.2, base=0.02), RECONNECT_RETRIES),
            **self.options,
        )
        pool.connection_class(**pool.connection_kwargs)  # unknown options fail here
        if pool.connection_kwargs.get("decode_responses") not in (None, False):
            raise ValueError("it must not set decode_responses")
        return pool

    def _open(self) -> Any:
        return redis_py().Redis.from_pool(self.pool())

    def client(self) -> _Client:
        return cast(_Client, self.given if self.given is not None else self._current())

    async def call(self, bucket: str | None, script: keys.Script, args: Sequence[keys.Arg]) -> Any:
        pool = self.client().connection_pool
        for attempt in range(RECONNECT_RETRIES + 1):
            try:
                return await self._on_connection(pool, [(script, args)])
            except Dropped as dropped:
                # The connection broke (server restarted, CLIENT KILL, idle timeout):
                # send the call again on a fresh one. Every script is safe to repeat.
                if attempt == RECONNECT_RETRIES:
                    raise dropped.error from None
        raise AssertionError("unreachable")

    async def call_many(
        self, calls: Sequence[tuple[str, keys.Script, Sequence[keys.Arg]]]
    ) -> list[Any]:
        return [await self.call(bucket, script, args) for bucket, script, args in calls]

    async def acknowledge(
        self, bucket: str | None, args: Sequence[keys.Arg], replicas: int, timeout_ms: int
    ) -> tuple[int, int]:
        from .redis_index import CONFIRM_TEXT

        confirm = keys.Script("confirm", CONFIRM_TEXT)
        pool = self.client().connection_pool
        try:
            reply, count = await self._on_connection(
                pool, [(confirm, args), (None, (replicas, timeout_ms))]
            )
        except Dropped as dropped:
            raise dropped.error from None
        return int(reply), int(count)

    async def _on_connection(
        self, pool: Any, calls: list[tuple[keys.Script | None, Sequence[keys.Arg]]]
    ) -> Any:
        """The calls one after the other on one connection of `pool` (None: WAIT); the
        last one's reply, or all of them when there are several.

        A command goes out in pieces of at most keys.PIECE_BYTES: a batch of large
        checkpoints is megabytes, and handing it to the transport at once copies it all
        on the event loop (twice, on Python 3.11), stalling every other agent.
        """
        errors = redis_py().errors
        connection = await pool.get_connection()  # connects, or waits for a free one
        replies = []
        try:
            for script, args in calls:
                if script is None:
                    replies.append(await _roundtrip(connection, ("WAIT", *args)))
                    continue
                try:
                    command = ("EVALSHA", script.sha, 0, *args)
                    replies.append(await _roundtrip(connection, command))
                except errors.NoScriptError:  # a restarted server, or SCRIPT FLUSH
                    replies.append(await _roundtrip(connection, ("EVAL", script.text, 0, *args)))
        except errors.ResponseError:
            raise  # the reply was read: the connection is in step
        except (errors.ConnectionError, errors.TimeoutError, OSError) as exc:
            await connection.disconnect(nowait=True)
            raise Dropped(exc) from exc
        except BaseException:
            await connection.disconnect(nowait=True)  # a command or reply may be half done
            raise
        finally:
            await pool.release(connection)
        return replies[0] if len(replies) == 1 else replies

    async def config(self, name: str) -> object:
        return await self.client().execute_command("CONFIG GET", name)

    async def close(self) -> None:
        client = self._taken()
        if client is not None:
            await client.aclose(close_connection_pool=True)


class Cluster(_PerLoop):
    """A Redis Cluster through redis-py's RedisCluster, found from one node's URL."""

    def __init__(self, url: str, options: dict[str, Any], max_connections: int = 64) -> None:
        super().__init__()
        self.url = url
        self.options = options
        self.max_connections = max_connections
        self.waited = 0  # calls sent again because their slot was being migrated

    def check(self) -> None:
        self._open()

    def _open(self) -> Any:
        return redis_py().RedisCluster.from_url(
            self.url, max_connections=self.max_connections, **self.options
        )

    async def call(self, bucket: str | None, script: keys.Script, args: Sequence[keys.Arg]) -> Any:
        client = self._current()
        errors = redis_py().errors
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MIGRATION_WAIT_SECONDS
        delay = 0.01
        while True:
            try:
                try:
                    return await client.execute_command("EVALSHA", script.sha, 1, bucket, *args)
                except errors.NoScriptError:  # a new or restarted node, or SCRIPT FLUSH
                    return await client.execute_command("EVAL", script.text, 1, bucket, *args)
            except (errors.ResponseError, errors.ClusterError) as exc:
                if not migrating(exc) or loop.time() > deadline:
                    raise
            self.waited += 1
            await asyncio.sleep(delay)  # the slot is being migrated: wait for the end
            delay = min(delay * 2, 0.2)

    async def call_many(
        self, calls: Sequence[tuple[str, keys.Script, Sequence[keys.Arg]]]
    ) -> list[Any]:
        """Calls on several buckets: one pipeline to each primary their slots are on, as
        the client last saw the slots; a call that failed there (a script the node
        lacks, a slot that moved, a node that went away, or an error of its own) is sent
        again alone, where it is handled as `call` does (every script is safe to repeat)."""
        client = self._current()
        redis = redis_py()
        if client.nodes_manager.default_node is None:
            await client.initialize()  # the slots, at the first call
        by_node: dict[str, tuple[Any, list[Any]]] = {}
        commands = []
        for n, (bucket, script, args) in enumerate(calls):
            command = redis.PipelineCommand(n, "EVALSHA", script.sha, 1, bucket, *args)
            commands.append(command)
            try:
                node = client.get_node_from_key(bucket)
            except redis.errors.RedisClusterException:
                continue  # sent alone below
            by_node.setdefault(node.name, (node, []))[1].append(command)
        await asyncio.gather(
            *(node.execute_pipeline(queued) for node, queued in by_node.values()),
            return_exceptions=True,  # what a node did not answer is sent alone below
        )
        return [
            command.result if _answered(command) else await self.call(bucket, script, args)
            for (bucket, script, args), command in zip(calls, commands, strict=True)
        ]

    async def acknowledge(
        self, bucket: str | None, args: Sequence[keys.Arg], replicas: int, timeout_ms: int
    ) -> tuple[int, int]:
        from .redis_index import CONFIRM_TEXT

        client = self._current()
        redis = redis_py()
        node = client.get_node_from_key(bucket)  # the primary of the bucket's slot now
        confirm = redis.PipelineCommand(0, "EVAL", CONFIRM_TEXT, 1, bucket, *args)
        wait = redis.PipelineCommand(1, "WAIT", replicas, timeout_ms)
        await node.execute_pipeline([confirm, wait])  # one connection: WAIT counts CONFIRM
        for command in (confirm, wait):
            if isinstance(command.result, Exception):
                raise command.result
        return int(confirm.result), int(wait.result)

    async def config(self, name: str) -> object:
        client = self._current()
        return await client.execute_command("CONFIG GET", name, target_nodes=client.RANDOM)

    async def close(self) -> None:
        client = self._taken()
        if client is not None:
            await client.aclose()


def _answered(command: Any) -> bool:
    """A pipeline command that got a reply, not an error (or no reply at all: its
    result is still redis-py's placeholder, or None)."""
    result = command.result
    return not isinstance(result, BaseException) and type(result) in _REPLIES


_REPLIES = (bytes, int, list, str, float, dict)  # what a script's reply can be


def migrating(exc: BaseException) -> bool:
    """A script refused because its slot is being migrated (redis_index.PROBE)."""
    text = str(exc)
    return any(sign in text for sign in MIGRATING)


async def _roundtrip(connection: Any, command: Sequence[keys.Arg]) -> Any:
    first = True
    for piece in keys.pieces(connection.pack_command(*command)):
        await connection.send_packed_command(piece, check_health=first)
        first = False
    return await connection.read_response()


async def server_settings(wire: Wire) -> tuple[int | None, bool] | None:
    """What the server says of itself: its proto-max-bulk-len, and whether it keeps
    anything across a restart (RDB snapshots or an append-only file); None when it
    refuses CONFIG GET (renamed, or not permitted)."""
    try:
        save = await wire.config("save")
        appendonly = await wire.config("appendonly")
        bulk = await wire.config("proto-max-bulk-len")
    except redis_py().errors.ResponseError:
        return None
    max_bulk = _config(bulk, "proto-max-bulk-len")
    persistent = not (_config(save, "save") == "" and _config(appendonly, "appendonly") == "no")
    return (int(max_bulk) if max_bulk is not None and max_bulk.isdigit() else None), persistent


def _config(reply: object, name: str) -> str | None:
    """One value of a CONFIG GET reply (a dict, or the flat list of RESP2), as text."""
    if isinstance(reply, dict):
        items = list(reply.items())
    elif isinstance(reply, list):
        items = list(zip(reply[::2], reply[1::2], strict=False))
    else:
        return None
    for key, value in items:
        key = key.decode() if isinstance(key, bytes) else str(key)
        if key == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None
