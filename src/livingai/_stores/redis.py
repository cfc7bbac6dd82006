"""RedisStore: checkpoints in Redis, for a hot tier shared by many processes.

`pip install "livingai[redis]"`. The key layout, the Lua scripts and the record encoding
are in `_redis_keys` (no I/O there); this module only moves bytes:

- a batch is appended by ONE Lua script call (EVALSHA, falling back to EVAL once the
  server has forgotten the script, after a restart or SCRIPT FLUSH), atomic and
  idempotent per version id; order within an execution comes from a server-side counter;
- every read, `latest_checkpoint` included, is one script call: one round trip;
- a call goes to the socket in pieces of at most 256 KiB, so a batch of large
  checkpoints never holds the event loop for long while it is copied out;
- connections come from a `BlockingConnectionPool`: past `max_connections`, callers
  wait for a free connection (up to POOL_WAIT_SECONDS) instead of failing;
- a call whose connection breaks is sent again once on a fresh connection (every script
  is safe to repeat); anything that still fails raises StoreError naming the server, with
  the password masked, and the engine retries it;
- the first call checks the server's persistence: with neither RDB snapshots nor an
  append-only file, one WARNING (once per store) says every checkpoint is lost when Redis
  restarts. Without permission to run CONFIG the check is skipped.

Durability is the server's: with `appendonly yes` and `appendfsync always` every
acknowledged append survives a crash of Redis; with `everysec` (Redis's default) up to
about a second of them may be lost; without persistence, all of them.

The store binds its connection pool to the event loop that first uses it, and opens a
new one when it is used from another loop (asyncio.run called twice, the engine's exit
flush). A client passed as `client=` is used as is and never closed by the store.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol, cast

from .._core.errors import (
    CheckpointCorruptError,
    ClosedError,
    ConfigError,
    FencedError,
    RecordRejectedError,
    StoreError,
    StoreUnusableError,
    check_setting,
)
from .._core.extras import require
from .._core.leases import fenced
from .._core.leases import held as held_error
from .._core.lifecycle import Closable
from .._core.model import NodeRecord
from .._core.retention import check_keep, execution_ids_to_delete, node_ids_to_delete
from .._core.store import Fences, Lease, StoreLimits
from .._core.urls import mask_url, redact, url_secrets
from .._core.usage import UsageBy, UsageRow, check_grouping, utc_text
from . import redis_keys as keys

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("livingai")

POOL_WAIT_SECONDS = 30.0  # a caller waits this long for a free connection
CONNECT_TIMEOUT_SECONDS = 3.0  # these two can be overridden in the URL:
SOCKET_TIMEOUT_SECONDS = 5.0  # ?socket_connect_timeout=..&socket_timeout=.. (each read
# or write on the socket, not a whole call)
RECONNECT_RETRIES = 1  # a call on a dropped connection is sent again once
CLOSE_WAIT_SECONDS = 10.0  # close() lets calls in flight finish for this long
DEFAULT_MAX_BULK = 512 * 1024 * 1024  # Redis's proto-max-bulk-len unless set otherwise
BULK_HEADROOM = 64 * 1024  # the packed record holds the ids and times besides the body

_UNCHECKED, _CHECKING, _CHECKED = 0, 1, 2


class _Client(Protocol):
    """What the store uses of a redis.asyncio.Redis."""

    connection_pool: Any

    async def execute_command(self, *args: Any, **options: Any) -> Any: ...

    async def aclose(self, close_connection_pool: bool | None = None) -> None: ...


@functools.cache
def _redis() -> SimpleNamespace:
    """redis-py, imported on first use: the core never imports it."""
    asyncio_redis = require("redis.asyncio", "redis")
    return SimpleNamespace(
        Redis=asyncio_redis.Redis,
        BlockingConnectionPool=asyncio_redis.BlockingConnectionPool,
        Retry=require("redis.asyncio.retry", "redis").Retry,
        Backoff=require("redis.backoff", "redis").ExponentialWithJitterBackoff,
        errors=require("redis.exceptions", "redis"),
    )


class RedisStore(Closable):
    """A store in Redis: every key starts with `{prefix}:` (see _redis_keys for the layout).

    `url` is a redis-py URL (redis://, rediss://, unix://; ?socket_timeout= and the like
    are honoured); `self.url` keeps it with the password masked, for messages. Or pass
    `client=`, a redis.asyncio.Redis with decode_responses=False, which the store uses
    and never closes. With `ttl_seconds`, an execution's keys expire that long after its
    last append (the hot tier of a TieredStore). `max_connections` bounds the pool.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: Redis | None = None,
        prefix: str = "livingai",
        ttl_seconds: int | None = None,
        max_connections: int = 64,
    ) -> None:
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(f"prefix must be a non-empty string; got {prefix!r}")
        if ttl_seconds is not None:
            check_setting("ttl_seconds", ttl_seconds, minimum=1, whole=True)
        check_setting("max_connections", max_connections, minimum=1, whole=True)
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.max_connections = max_connections
        self._given = client
        if client is None:
            _redis()  # fail here, naming the extra, not at the first call
            self.url = mask_url(url)
            self._secrets = url_secrets(url)
        else:
            options = client.connection_pool.connection_kwargs
            if options.get("decode_responses"):
                raise ConfigError(
                    "RedisStore needs a client with decode_responses=False: checkpoints are bytes"
                )
            self.url = f"redis://{options.get('host', '?')}:{options.get('port', '?')}"
            self.url += f"/{options.get('db', 0)}"
            password = options.get("password")
            self._secrets = [password] if isinstance(password, str) and password else []
        self._secret_url = url  # with the password: only ever handed to redis-py
        if client is None:
            self._pool()  # a bad URL or option fails here, not at the first save
        self._client: _Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._persistence = _UNCHECKED
        self._max_bulk = DEFAULT_MAX_BULK
        self._inflight = 0
        self._drained: asyncio.Event | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"

    # -- connections --------------------------------------------------------------------

    def _connection(self) -> _Client:
        self._check_open()
        if self._given is not None:
            return cast(_Client, self._given)
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A pool's connections belong to one event loop: a new loop gets a new pool.
            # One left on a closed loop cannot be closed any more; its sockets go with it.
            self._client = self._open()
            self._loop = loop
        return self._client

    def _pool(self) -> Any:
        """A connection pool for the URL (nothing connects yet); ConfigError naming the
        URL, password masked, when redis-py refuses it or one of its options."""
        redis = _redis()
        try:
            pool = redis.BlockingConnectionPool.from_url(
                self._secret_url,
                max_connections=self.max_connections,
                timeout=POOL_WAIT_SECONDS,
                socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                socket_timeout=SOCKET_TIMEOUT_SECONDS,
                retry=redis.Retry(redis.Backoff(cap=0.2, base=0.02), RECONNECT_RETRIES),
                client_name=keys.client_name(self.prefix),
                decode_responses=False,
            )
            pool.connection_class(**pool.connection_kwargs)  # unknown options fail here
        except (TypeError, ValueError) as exc:
            detail = redact(str(exc), self._secret_url, self.url, self._secrets)
            raise ConfigError(f"invalid Redis URL {self.url!r}: {detail}") from None
        if pool.connection_kwargs.get("decode_responses") not in (None, False):
            raise ConfigError(f"invalid Redis URL {self.url!r}: it must not set decode_responses")
        return pool

    def _open(self) -> _Client:
        return cast(_Client, _redis().Redis.from_pool(self._pool()))

    async def _call(self, script: keys.Script, *args: keys.Arg) -> Any:
        """One script call; StoreError when Redis cannot be reached or fails."""
        client = self._connection()
        errors = _redis().errors
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        self._inflight += 1
        try:
            if self._persistence == _UNCHECKED:
                await self._check_server(client)
            for attempt in range(RECONNECT_RETRIES + 1):
                try:
                    reply = await self._script(client.connection_pool, script, args)
                    if task is not None and task.cancelling() > cancels:
                        # On Python 3.11 redis-py's asyncio.wait_for can swallow a cancel
                        # that lands as the reply arrives; deliver it, as the caller asked.
                        raise asyncio.CancelledError
                    return reply
                except _Dropped as dropped:
                    # The connection broke (server restarted, CLIENT KILL, idle timeout):
                    # send the call again on a fresh one. Every script is safe to repeat.
                    if attempt == RECONNECT_RETRIES:
                        raise dropped.error from None
            raise AssertionError("unreachable")
        except (errors.RedisError, OSError) as exc:
            raise self._failure(exc) from exc
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._drained is not None:
                self._drained.set()

    async def _script(self, pool: Any, script: keys.Script, args: tuple[keys.Arg, ...]) -> Any:
        """EVALSHA on a connection of `pool`, or EVAL when the server lacks the script.

        The command goes out in pieces of at most keys.PIECE_BYTES: a batch of large
        checkpoints is megabytes, and handing it to the transport at once copies it all
        on the event loop (twice, on Python 3.11), stalling every other agent.
        """
        errors = _redis().errors
        connection = await pool.get_connection()  # connects, or waits for a free one
        try:
            try:
                return await _roundtrip(connection, "EVALSHA", script.sha, args)
            except errors.NoScriptError:  # a restarted server, or SCRIPT FLUSH
                return await _roundtrip(connection, "EVAL", script.text, args)
        except errors.ResponseError:
            raise  # the reply was read: the connection is in step
        except (errors.ConnectionError, errors.TimeoutError, OSError) as exc:
            await connection.disconnect(nowait=True)
            raise _Dropped(exc) from exc
        except BaseException:
            await connection.disconnect(nowait=True)  # a command or reply may be half done
            raise
        finally:
            await pool.release(connection)

    def _failure(self, exc: BaseException) -> Exception:
        """The store's error for a redis-py one: what no retry can fix is told apart."""
        if self._closed:
            return ClosedError(f"{self!r} was closed while a call was in flight")
        message = redact(str(exc), self._secret_url, self.url, self._secrets)
        text = f"{self!r}: {type(exc).__name__}: {message}"
        errors = _redis().errors
        if isinstance(exc, errors.AuthenticationError | errors.NoPermissionError):
            return StoreUnusableError(
                f"{text}; check the user and password in the URL and what that user may do"
            )
        if message.startswith(keys.FENCED):
            return FencedError(text)
        if message.startswith(keys.REJECTED):
            return RecordRejectedError(text)
        if message.startswith(keys.DAMAGED):
            return StoreUnusableError(f"{text}; the keys under prefix {self.prefix!r} are damaged")
        return StoreError(text)

    async def _check_server(self, client: _Client) -> None:
        """Once per store: learn the largest argument the server takes, and warn when
        Redis keeps nothing across a restart."""
        self._persistence = _CHECKING  # concurrent first calls do not check again
        try:
            save = await client.execute_command("CONFIG GET", "save")
            appendonly = await client.execute_command("CONFIG GET", "appendonly")
            bulk = await client.execute_command("CONFIG GET", "proto-max-bulk-len")
        except _redis().errors.ResponseError:  # CONFIG renamed or not permitted: skip
            self._persistence = _CHECKED
            return
        except BaseException:
            self._persistence = _UNCHECKED  # the next call checks again
            raise
        self._persistence = _CHECKED
        max_bulk = _config(bulk, "proto-max-bulk-len")
        if max_bulk is not None and max_bulk.isdigit():
            self._max_bulk = int(max_bulk)
        if _config(save, "save") == "" and _config(appendonly, "appendonly") == "no":
            logger.warning(
                '%r: the Redis server has no persistence (save "" and appendonly no): '
                "every checkpoint is lost when Redis restarts. Turn on the append-only file "
                "(appendonly yes in redis.conf, or CONFIG SET appendonly yes), or use "
                "TieredStore to keep a durable copy.",
                self,
            )

    # -- the store contract -------------------------------------------------------------

    def _records(self, reply: object, *, listing: bool = True) -> list[NodeRecord]:
        """Records from a READ reply: a packed record, then its checkpoint, per record.

        A record that cannot be read is corrupt in Redis: a listing logs it and goes on
        (a version whose checkpoint is not the one saved is listed without it); a read
        of that one record raises CheckpointCorruptError naming it."""
        if reply is None:
            return []
        if not isinstance(reply, list) or len(reply) % 2:
            raise StoreError(f"{self!r}: unexpected reply {type(reply).__name__} from Redis")
        records = []
        for head, blob in zip(reply[::2], reply[1::2], strict=True):
            try:
                if not isinstance(head, bytes) or not isinstance(blob, bytes | None):
                    raise ValueError("not bytes")
                records.append(keys.unpack(head, blob))
            except (ValueError, UnicodeDecodeError) as exc:
                error = CheckpointCorruptError(f"{self!r}: a stored record is corrupt: {exc}")
                if not listing:
                    raise error from exc
                logger.error("%s; listed without it", error)
                if isinstance(exc, keys.BlobMismatch):
                    records.append(exc.record)
        return records

    async def _one(self, operation: str, argument: str) -> NodeRecord | None:
        reply = await self._call(keys.READ, self.prefix, operation, argument)
        records = self._records(reply, listing=False)
        return records[-1] if records else None

    @property
    def limits(self) -> StoreLimits:
        """Redis takes each argument up to its proto-max-bulk-len (512 MB by default; the
        server's own value once connected): a state, or the rest of a record."""
        return StoreLimits(
            max_body_bytes=self._max_bulk - BULK_HEADROOM,
            max_state_bytes=int(self._max_bulk * 0.99),
        )

    async def append(self, records: Sequence[NodeRecord], *, fences: Fences | None = None) -> None:
        self._check_open()
        if not records:
            return
        args = keys.append_args(self.prefix, self.ttl_seconds, records, fences)
        for arg in args:
            # An argument over the limit makes Redis drop the connection, which looks
            # like an outage and would be retried for ever: refuse the record instead.
            if isinstance(arg, bytes) and len(arg) > self._max_bulk:
                owner = keys.owner_of(args, arg)
                raise RecordRejectedError(
                    f"{self!r}: node {owner} needs a {len(arg)}-byte argument; this Redis "
                    f"takes at most {self._max_bulk} (proto-max-bulk-len)"
                )
        try:
            await self._call(keys.APPEND, *args)
        except FencedError:
            raise fenced(self, fences or {}) from None

    async def read(self, node_id: str) -> NodeRecord | None:
        return await self._one("read", node_id)

    async def list_nodes(self, execution_id: str) -> list[NodeRecord]:
        return self._records(await self._call(keys.READ, self.prefix, "nodes", execution_id))

    async def list_versions(self, execution_id: str) -> list[NodeRecord]:
        return self._records(await self._call(keys.READ, self.prefix, "versions", execution_id))

    async def latest_checkpoint(self, execution_id: str) -> NodeRecord | None:
        return await self._one("checkpoint", execution_id)

    async def list_executions(self) -> list[str]:
        reply = await self._call(keys.READ, self.prefix, "executions", "")
        if not isinstance(reply, list) or not all(isinstance(n, bytes) for n in reply):
            raise StoreError(f"{self!r}: unexpected reply {type(reply).__name__} from Redis")
        return [name.decode() for name in reply]

    async def history(self, node_id: str) -> list[NodeRecord]:
        return self._records(await self._call(keys.READ, self.prefix, "history", node_id))

    async def usage(
        self,
        by: UsageBy,
        *,
        execution_ids: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageRow]:
        """From the counters kept as versions are stored; a day counts whole when it
        overlaps [since, until)."""
        by = check_grouping(by)
        first, last = _day_number(since), _day_number(until, before=True)
        sums: dict[str, list[float]] = {}
        if execution_ids is None and by != "execution":
            reply = await self._call(keys.USAGE, self.prefix, "days", first, last)
            for day, fields in zip(reply[::2], reply[1::2], strict=True):
                for (model, counter), value in _counters(fields, 2):
                    group = model if by == "model" else day.decode() if by == "day" else "total"
                    _add(sums, group, counter, value)
        else:
            ids = await self.list_executions() if execution_ids is None else execution_ids
            reply = await self._call(keys.USAGE, self.prefix, "executions", *ids)
            for execution, fields in zip(reply[::2], reply[1::2], strict=True):
                for (day, model, counter), value in _counters(fields, 3):
                    if not first <= int(day.replace("-", "")) <= last:
                        continue
                    group = {"execution": execution.decode(), "model": model, "day": day}
                    _add(sums, group.get(by, "total"), counter, value)
        return [
            UsageRow(key, int(calls), int(prompt), int(completion), cost)
            for key, (calls, prompt, completion, cost) in sorted(sums.items())
        ]

    # -- retention ----------------------------------------------------------------------

    async def delete_executions(self, execution_ids: Sequence[str]) -> int:
        """A few executions a script call, each call atomic: a large sweep never holds the
        server for long, and one cut short is finished by calling again."""
        self._check_open()
        ids = execution_ids_to_delete(execution_ids)
        deleted = 0
        for start in range(0, len(ids), keys.RETAIN_EXECUTIONS_PER_CALL):
            bite = ids[start : start + keys.RETAIN_EXECUTIONS_PER_CALL]
            deleted += int(await self._call(keys.RETAIN, self.prefix, "delete", *bite))
        return deleted

    async def delete_nodes(self, execution_id: str, node_ids: Sequence[str]) -> int:
        """A few nodes a script call, each call atomic, as delete_executions."""
        self._check_open()
        ids = node_ids_to_delete(execution_id, node_ids)
        deleted = 0
        for start in range(0, len(ids), keys.RETAIN_NODES_PER_CALL):
            bite = ids[start : start + keys.RETAIN_NODES_PER_CALL]
            reply = await self._call(keys.RETAIN, self.prefix, "nodes", execution_id, *bite)
            deleted += int(reply)
        return deleted

    async def drop_checkpoints(self, execution_id: str, keep: int) -> int:
        self._check_open()
        reply = await self._call(keys.RETAIN, self.prefix, "drop", execution_id, check_keep(keep))
        return int(reply)

    # -- leases -------------------------------------------------------------------------

    async def _lease(
        self, op: str, execution_id: str, worker: str, token: int, ms: int, extra: str = ""
    ) -> Any:
        ttl = self.ttl_seconds or 0
        args = (self.prefix, op, execution_id, worker, token, ms, ttl, extra)
        return await self._call(keys.LEASE, *args)

    async def acquire_lease(
        self, execution_id: str, worker_id: str, seconds: float, *, take_over: str | None = None
    ) -> Lease:
        ok, held, expires_ms = await self._lease(
            "acquire", execution_id, worker_id, 0, _milliseconds(seconds), take_over or ""
        )
        lease = _held_lease(execution_id, held, expires_ms)
        if not ok:
            raise held_error(lease, time.time())
        return lease

    async def renew_lease(self, lease: Lease, seconds: float) -> Lease | None:
        ok, held, expires_ms = await self._lease(
            "renew", lease.execution_id, lease.worker_id, lease.token, _milliseconds(seconds)
        )
        return _held_lease(lease.execution_id, held, expires_ms) if ok else None

    async def release_lease(self, lease: Lease) -> None:
        await self._lease("release", lease.execution_id, lease.worker_id, lease.token, 0)

    async def leases(self) -> list[Lease]:
        reply = await self._lease("list", "", "", 0, 0, keys.scan_pattern(self.prefix, "lease:"))
        found = [
            _held_lease(name.decode(), held, expires_ms)
            for name, held, expires_ms in zip(reply[::3], reply[1::3], reply[2::3], strict=True)
        ]
        return sorted(found, key=lambda lease: lease.execution_id)

    async def close(self) -> None:
        """Let calls in flight finish, then close the pool (not a client passed in)."""
        await self._closing(self._release)

    async def _release(self) -> None:
        if self._inflight:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), CLOSE_WAIT_SECONDS)
            except TimeoutError:
                logger.warning("%r: closing with %d calls in flight", self, self._inflight)
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is not None and loop is asyncio.get_running_loop():
            try:
                await client.aclose(close_connection_pool=True)
            except (_redis().errors.RedisError, OSError) as exc:
                logger.warning("%r: closing the connection pool failed: %s", self, exc)


class _Dropped(Exception):
    """A connection broke during a call (not while connecting): worth one more try."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


async def _roundtrip(connection: Any, command: str, script: str, args: tuple[keys.Arg, ...]) -> Any:
    first = True
    for piece in keys.pieces(connection.pack_command(command, script, 0, *args)):
        await connection.send_packed_command(piece, check_health=first)
        first = False
    return await connection.read_response()


_COUNTERS = {"calls": 0, "prompt": 1, "completion": 2, "cost": 3}


def _counters(fields: list[bytes], parts: int) -> list[tuple[list[str], float]]:
    """(group parts + counter name, value) from an HGETALL reply of usage counters."""
    found = []
    for name, value in zip(fields[::2], fields[1::2], strict=True):
        split = name.decode().split("\0")
        if len(split) == parts and split[-1] in _COUNTERS:
            found.append((split, float(value)))
    return found


def _add(sums: dict[str, list[float]], group: str, counter: str, value: float) -> None:
    sums.setdefault(group, [0.0, 0.0, 0.0, 0.0])[_COUNTERS[counter]] += value


def _day_number(moment: datetime | None, *, before: bool = False) -> int:
    """The UTC day of a bound as YYYYMMDD; an open bound is the widest."""
    if moment is None:
        return 99991231 if before else 0
    text = utc_text(moment - timedelta(microseconds=1) if before else moment)
    assert text is not None
    return int(text[:10].replace("-", ""))


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _held_lease(execution_id: str, held: bytes | str, expires_ms: int) -> Lease:
    """A lease from its key's value, "<token>:<worker id>"."""
    text = held.decode() if isinstance(held, bytes) else held
    token, _, worker = text.partition(":")
    return Lease(execution_id, worker, int(token), int(expires_ms) / 1000.0)


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
