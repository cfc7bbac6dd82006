"""RedisStore: checkpoints in Redis, for a hot tier shared by many processes; on one
server (or a replicated one) or on a Redis Cluster (`cluster=True`, or a
`redis+cluster://` URL in open_store).

`pip install "livingai[redis]"`. The key layout and the record encoding are in
redis_keys, the Lua in redis_lua, redis_retain and redis_index, the cluster's buckets in
redis_buckets, the connections in redis_wire (no I/O but there); this module only says
what to call:

- a batch is appended by ONE Lua script call (on a cluster one per bucket it touches,
  at once), atomic and idempotent per version id; order within an execution comes from
  a server-side counter;
- every read, `latest_checkpoint` included, is one script call: one round trip (on a
  cluster, a node id's read or history asks every bucket at once);
- pages of executions and the open runs come from an index kept by the same scripts
  (redis_index), with a one-time backfill for stores written before it existed;
- anything that fails raises StoreError naming the server, with the password masked,
  and the engine retries it;
- the first call checks the server's persistence: with neither RDB snapshots nor an
  append-only file, one WARNING (once per store) says every checkpoint is lost when Redis
  restarts. Without permission to run CONFIG the check is skipped.

Durability is the server's: with `appendonly yes` and `appendfsync always` every
acknowledged append survives a crash of Redis; with `everysec` (Redis's default) up to
about a second of them may be lost; without persistence, all of them.

Replication is asynchronous: a primary acknowledges a write before its replicas have it,
so when it fails and a replica takes over (Sentinel, or a cluster's failover) the appends
of its last moments may be missing, though acknowledged. With `wait_replicas=N` an append
returns only once N replicas hold the whole batch (CONFIRM, then WAIT N wait_timeout_ms,
on the primary that serves it then): a save that returned True survives the loss of
that primary, as long as one of those replicas takes over (Redis promotes the most
up-to-date). When fewer replicas answer in time (a primary that lost its replica) the
append raises StoreError and the engine sends the batch again: versions are
deduplicated by id, so it is stored once.

On a cluster a batch is one APPEND per bucket it touches, each atomic on its own slot: a
batch cut short (a primary failing) may be stored in some buckets and not in others,
which the retry completes. The versions of one execution are always in one bucket, so
each execution's part of a batch is all or nothing, fences included; a fenced batch
checks every fence before it writes any part. A call on a slot being migrated waits
until the migration ends (redis_wire).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._core.errors import (
    ClosedError,
    ConfigError,
    FencedError,
    RecordRejectedError,
    StoreError,
    StoreUnusableError,
    check_setting,
)
from .._core.leases import fenced
from .._core.leases import held as held_error
from .._core.lifecycle import Closable
from .._core.listing import ExecutionEntry, ExecutionPage, PageQuery
from .._core.model import NodeRecord
from .._core.retention import check_keep, execution_ids_to_delete, node_ids_to_delete
from .._core.store import Fences, Lease, StoreLimits
from .._core.urls import mask_url, redact, url_secrets
from .._core.usage import UsageBy, UsageRow, check_grouping
from . import redis_index as index
from . import redis_keys as keys
from . import redis_lua as lua
from . import redis_usage as usage
from .redis_buckets import Stamps, bucket_of, bucket_prefixes
from .redis_retain import RETAIN, RETAIN_EXECUTIONS_PER_CALL, RETAIN_NODES_PER_CALL
from .redis_wire import (
    CONNECT_TIMEOUT_SECONDS,
    SOCKET_TIMEOUT_SECONDS,
    Cluster,
    Standalone,
    Wire,
    redis_py,
    server_settings,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("livingai")

CLOSE_WAIT_SECONDS = 10.0  # close() lets calls in flight finish for this long
DEFAULT_MAX_BULK = 512 * 1024 * 1024  # Redis's proto-max-bulk-len unless set otherwise
BULK_HEADROOM = 64 * 1024  # the packed record holds the ids and times besides the body
INDEX = keys.Script("index", index.INDEX_TEXT)

_UNCHECKED, _CHECKING, _CHECKED = 0, 1, 2


class RedisStore(Closable):
    """A store in Redis: every key starts with `{prefix}:` (see redis_keys for the layout).

    `url` is a redis-py URL (redis://, rediss://, unix://; ?socket_timeout= and the like
    are honoured); `self.url` keeps it with the password masked, for messages. Or pass
    `client=`, a redis.asyncio.Redis with decode_responses=False, which the store uses
    and never closes. With `cluster=True`, `url` names one node of a Redis Cluster
    (redis:// or rediss://): the client finds the others. With `ttl_seconds`, an
    execution's keys expire that long after its last append (the hot tier of a
    TieredStore). `max_connections` bounds the pool (on a cluster, each node's). With
    `wait_replicas`, an append waits up to `wait_timeout_ms` for that many replicas to
    hold it (see the module's docstring).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: Redis | None = None,
        prefix: str = "livingai",
        ttl_seconds: int | None = None,
        max_connections: int = 64,
        cluster: bool = False,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(f"prefix must be a non-empty string; got {prefix!r}")
        if ttl_seconds is not None:
            check_setting("ttl_seconds", ttl_seconds, minimum=1, whole=True)
        check_setting("max_connections", max_connections, minimum=1, whole=True)
        check_setting("wait_replicas", wait_replicas, minimum=0, whole=True)
        check_setting("wait_timeout_ms", wait_timeout_ms, minimum=1, whole=True)
        if not isinstance(cluster, bool):
            raise ConfigError(f"cluster must be True or False; got {cluster!r}")
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.max_connections = max_connections
        self.cluster = cluster
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        if cluster and ("{" in prefix or "}" in prefix):
            raise ConfigError(
                f"prefix {prefix!r}: on a Redis Cluster a prefix holds no braces (the "
                "store's keys carry hash tags of their own)"
            )
        if cluster and client is not None:
            raise ConfigError("RedisStore(cluster=True) takes a URL, not a client")
        if url.lower().startswith(("redis+cluster:", "rediss+cluster:")):
            raise ConfigError(
                f"{mask_url(url)!r}: RedisStore takes a redis:// URL of one node with "
                "cluster=True (open_store takes redis+cluster:// URLs)"
            )
        if client is None:
            redis_py()  # fail here, naming the extra, not at the first call
            self.url = mask_url(url)
            self._secrets = url_secrets(url)
        else:
            given = client.connection_pool.connection_kwargs
            if given.get("decode_responses"):
                raise ConfigError(
                    "RedisStore needs a client with decode_responses=False: checkpoints are bytes"
                )
            self.url = f"redis://{given.get('host', '?')}:{given.get('port', '?')}"
            self.url += f"/{given.get('db', 0)}"
            password = given.get("password")
            self._secrets = [password] if isinstance(password, str) and password else []
        self._secret_url = url  # with the password: only ever handed to redis-py
        socket_timeout = max(SOCKET_TIMEOUT_SECONDS, wait_timeout_ms / 1000 + 2.0)
        options: dict[str, Any] = {
            "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "socket_timeout": socket_timeout if wait_replicas else SOCKET_TIMEOUT_SECONDS,
            "client_name": keys.client_name(prefix),
            "decode_responses": False,
        }
        self._prefixes = bucket_prefixes(prefix) if cluster else (prefix,)
        self._stamps = Stamps() if cluster else None
        self._wire: Wire = (
            Cluster(url, options, max_connections)
            if cluster
            else Standalone(url, options, client, max_connections)
        )
        try:
            self._wire.check()  # a bad URL or option fails here, not at the first save
        except (TypeError, ValueError) as exc:
            detail = redact(str(exc), self._secret_url, self.url, self._secrets)
            raise ConfigError(f"invalid Redis URL {self.url!r}: {detail}") from None
        self._persistence = _UNCHECKED
        self._max_bulk = DEFAULT_MAX_BULK
        self._indexed = False
        self._inflight = 0
        self._drained: asyncio.Event | None = None
        self._closed = False

    def __repr__(self) -> str:
        kind = ", cluster=True" if self.cluster else ""
        return f"RedisStore({self.url!r}, prefix={self.prefix!r}{kind})"

    # -- calls --------------------------------------------------------------------------

    def _bucket(self, execution_id: str) -> int:
        return bucket_of(execution_id) if self.cluster else 0

    async def _call(self, bucket: int, script: keys.Script, *args: keys.Arg) -> Any:
        """One script call on a bucket's layout (its prefix first); StoreError when Redis
        cannot be reached or fails."""
        prefix = self._prefixes[bucket]
        key = prefix if self.cluster else None
        return await self._guarded(lambda: self._wire.call(key, script, (prefix, *args)))

    async def _calls(
        self, calls: Sequence[tuple[int, keys.Script, Sequence[keys.Arg]]]
    ) -> list[Any]:
        """Script calls at once, each on its bucket; their replies in order (on a cluster
        a pipeline a primary, the calls redis-py had to redirect sent again alone)."""
        if len(calls) == 1 or not self.cluster:
            return [await self._call(bucket, script, *args) for bucket, script, args in calls]
        sent = [
            (self._prefixes[b], script, (self._prefixes[b], *args)) for b, script, args in calls
        ]
        return list(await self._guarded(lambda: self._wire.call_many(sent)))

    async def _everywhere(self, script: keys.Script, *args: keys.Arg) -> list[Any]:
        """The same call on every bucket, at once; their replies in bucket order."""
        return await self._calls([(b, script, args) for b in range(len(self._prefixes))])

    async def _guarded(self, call: Callable[[], Awaitable[Any]]) -> Any:
        self._check_open()
        errors = redis_py().errors
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        self._inflight += 1
        try:
            if self._persistence == _UNCHECKED:
                await self._check_server()
            reply = await call()
            if task is not None and task.cancelling() > cancels:
                # On Python 3.11 redis-py's asyncio.wait_for can swallow a cancel that
                # lands as the reply arrives; deliver it, as the caller asked.
                raise asyncio.CancelledError
            return reply
        except (errors.RedisError, errors.RedisClusterException, OSError) as exc:
            raise self._failure(exc) from exc
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._drained is not None:
                self._drained.set()

    def _failure(self, exc: BaseException) -> Exception:
        """The store's error for a redis-py one: what no retry can fix is told apart."""
        if self._closed:
            return ClosedError(f"{self!r} was closed while a call was in flight")
        message = redact(str(exc), self._secret_url, self.url, self._secrets)
        text = f"{self!r}: {type(exc).__name__}: {message}"
        errors = redis_py().errors
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

    async def _check_server(self) -> None:
        """Once per store: learn the largest argument the server takes, and warn when
        Redis keeps nothing across a restart."""
        self._persistence = _CHECKING  # concurrent first calls do not check again
        try:
            settings = await server_settings(self._wire)
        except BaseException:
            self._persistence = _UNCHECKED  # the next call checks again
            raise
        self._persistence = _CHECKED
        if settings is None:  # CONFIG renamed or not permitted: skip
            return
        max_bulk, persistent = settings
        if max_bulk is not None:
            self._max_bulk = max_bulk
        if not persistent:
            logger.warning(
                '%r: the Redis server has no persistence (save "" and appendonly no): '
                "every checkpoint is lost when Redis restarts. Turn on the append-only file "
                "(appendonly yes in redis.conf, or CONFIG SET appendonly yes), or use "
                "TieredStore to keep a durable copy.",
                self,
            )

    # -- the store contract -------------------------------------------------------------

    def _records(self, reply: object, *, listing: bool = True) -> list[NodeRecord]:
        return keys.records_of(reply, repr(self), listing=listing)

    async def _stamped(self, operation: str, node_id: str) -> list[Any]:
        """A node's versions from every bucket, oldest first: [packed, checkpoint, ...]."""
        found: list[tuple[float, int, list[Any]]] = []
        for reply in await self._everywhere(lua.READ, operation, node_id):
            for n in range(0, len(reply or []), 3):
                found.append((float(reply[n]), len(found), reply[n + 1 : n + 3]))
        found.sort(key=lambda item: item[:2])
        return [part for _, _, pair in found for part in pair]

    async def _one(self, operation: str, execution_id: str) -> NodeRecord | None:
        reply = await self._call(self._bucket(execution_id), lua.READ, operation, execution_id)
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
        groups: dict[int, list[int]] = {}  # bucket -> the positions of its records
        for position, record in enumerate(records):
            groups.setdefault(self._bucket(record.execution_id), []).append(position)
        fenced_by: dict[int, dict[str, int]] = {}
        for execution_id, token in (fences or {}).items():
            fenced_by.setdefault(self._bucket(execution_id), {})[execution_id] = token
            groups.setdefault(self._bucket(execution_id), [])
        first = None if self._stamps is None else self._stamps.take(len(records))
        parts = []
        for bucket, positions in groups.items():
            part = [records[n] for n in positions]
            stamps = None if first is None else [first + n for n in positions]
            args = keys.append_args(
                self._prefixes[bucket], self.ttl_seconds, part, fenced_by.get(bucket), stamps
            )
            self._check_sizes(args)
            parts.append((bucket, args[1:], part))
        try:
            if fenced_by and len(parts) > 1:
                # Each part checks its own fences as it is stored; first every fence is
                # checked, so that a batch with one lost lease stores nothing.
                await self._calls([self._fence_check(b, named) for b, named in fenced_by.items()])
            await self._calls([(bucket, lua.APPEND, args) for bucket, args, _ in parts])
            if self.wait_replicas:
                await _gather(
                    [self._acknowledge(bucket, part) for bucket, _, part in parts if part]
                )
        except FencedError:
            raise fenced(self, fences or {}) from None

    def _fence_check(
        self, bucket: int, fences: dict[str, int]
    ) -> tuple[int, keys.Script, list[keys.Arg]]:
        """An APPEND of no records: FencedError unless each of a bucket's fences holds."""
        args = keys.append_args(self._prefixes[bucket], self.ttl_seconds, [], fences)
        return bucket, lua.APPEND, args[1:]

    def _check_sizes(self, args: list[keys.Arg]) -> None:
        for arg in args:
            # An argument over the limit makes Redis drop the connection, which looks
            # like an outage and would be retried for ever: refuse the record instead.
            if isinstance(arg, bytes) and len(arg) > self._max_bulk:
                owner = keys.owner_of(args, arg)
                raise RecordRejectedError(
                    f"{self!r}: node {owner} needs a {len(arg)}-byte argument; this Redis "
                    f"takes at most {self._max_bulk} (proto-max-bulk-len)"
                )

    async def _acknowledge(self, bucket: int, records: list[NodeRecord]) -> None:
        """Wait until wait_replicas replicas hold these records; StoreError when they do
        not within wait_timeout_ms, or when the primary serving them now lacks one (it
        took over without it): the engine then sends the batch again."""
        prefix = self._prefixes[bucket]
        args: list[keys.Arg] = [prefix]
        for record in records:
            args += (record.execution_id, record.version_id)
        key = prefix if self.cluster else None
        stored, replicas = await self._guarded(
            lambda: self._wire.acknowledge(key, args, self.wait_replicas, self.wait_timeout_ms)
        )
        if not stored:
            raise StoreError(
                f"{self!r}: a version of the batch is missing on the primary that serves it "
                "now (a failover lost it); the batch must be sent again"
            )
        if replicas < self.wait_replicas:
            raise StoreError(
                f"{self!r}: {replicas} of {self.wait_replicas} replicas acknowledged the batch "
                f"within {self.wait_timeout_ms} ms (wait_replicas); it may be lost if the "
                "primary fails before they have it"
            )

    async def read(self, node_id: str) -> NodeRecord | None:
        if not self.cluster:
            records = self._records(await self._call(0, lua.READ, "read", node_id), listing=False)
        else:
            records = self._records(await self._stamped("latest", node_id), listing=False)
        return records[-1] if records else None

    async def list_nodes(self, execution_id: str) -> list[NodeRecord]:
        bucket = self._bucket(execution_id)
        return self._records(await self._call(bucket, lua.READ, "nodes", execution_id))

    async def list_versions(self, execution_id: str) -> list[NodeRecord]:
        bucket = self._bucket(execution_id)
        return self._records(await self._call(bucket, lua.READ, "versions", execution_id))

    async def latest_checkpoint(self, execution_id: str) -> NodeRecord | None:
        return await self._one("checkpoint", execution_id)

    async def list_executions(self) -> list[str]:
        if not self.cluster:
            reply = await self._call(0, lua.READ, "executions", "")
            if not isinstance(reply, list) or not all(isinstance(n, bytes) for n in reply):
                raise StoreError(f"{self!r}: unexpected reply {type(reply).__name__} from Redis")
            return [name.decode() for name in reply]
        found = []
        for reply in await self._everywhere(lua.READ, "first_seen", ""):
            pairs = zip(reply[::2], reply[1::2], strict=True)
            found += [(float(seq), name.decode()) for name, seq in pairs]
        return [name for _, name in sorted(found)]

    async def history(self, node_id: str) -> list[NodeRecord]:
        if not self.cluster:
            return self._records(await self._call(0, lua.READ, "history", node_id))
        return self._records(await self._stamped("stamped", node_id))

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
        first, last = usage.day_number(since), usage.day_number(until, before=True)
        sums = usage.Sums()
        if execution_ids is None and by != "execution":
            for reply in await self._everywhere(lua.USAGE, "days", first, last):
                sums.add_days(reply, by)
        else:
            ids = await self.list_executions() if execution_ids is None else execution_ids
            by_bucket: dict[int, list[str]] = {}
            for execution_id in ids:
                by_bucket.setdefault(self._bucket(execution_id), []).append(execution_id)
            calls = [(b, lua.USAGE, ("executions", *named)) for b, named in by_bucket.items()]
            for reply in await self._calls(calls):
                sums.add_executions(reply, by, first, last)
        return sums.rows()

    # -- the index ----------------------------------------------------------------------

    async def _ensure_index(self) -> None:
        """Before the first index read: index what was stored before the index existed
        (redis_index: bounded calls, resumable), once per store object."""
        if self._indexed:
            return
        for bucket in range(len(self._prefixes)):
            chunk = str(index.BACKFILL_CHUNK)
            while True:
                done, _ = await self._call(bucket, INDEX, "backfill", self._hide, chunk)
                if int(done):
                    break
        self._indexed = True

    @property
    def _hide(self) -> str:
        return "1" if self.ttl_seconds else ""

    async def open_runs(self) -> list[ExecutionEntry]:
        await self._ensure_index()
        entries = self._entries(await self._everywhere(INDEX, "open", self._hide))
        return sorted(entries, key=lambda e: e.key)

    async def list_page(self, query: PageQuery) -> ExecutionPage:
        await self._ensure_index()
        high, low = index.bounds(query)
        want = str(query.limit + 1)
        found = await self._everywhere(
            INDEX, "page", self._hide, index.zset_of(query), high, low, want
        )
        entries = sorted(self._entries(found), key=lambda e: e.key, reverse=True)
        return ExecutionPage.newest_first(entries[: query.limit + 1], query.limit)

    def _entries(self, replies: list[Any]) -> list[ExecutionEntry]:
        """Entries from INDEX replies: execution id and entry pairs."""
        entries = []
        for reply in replies:
            for name, text in zip(reply[::2], reply[1::2], strict=True):
                try:
                    entries.append(index.entry(name, text))
                except (ValueError, UnicodeDecodeError):
                    logger.error("%r: the index entry of %r is damaged: %r", self, name, text)
        return entries

    # -- retention ----------------------------------------------------------------------

    async def delete_executions(self, execution_ids: Sequence[str]) -> int:
        """A few executions a script call, each call atomic: a large sweep never holds the
        server for long, and one cut short is finished by calling again."""
        self._check_open()
        ids = execution_ids_to_delete(execution_ids)
        by_bucket: dict[int, list[str]] = {}
        for execution_id in ids:
            by_bucket.setdefault(self._bucket(execution_id), []).append(execution_id)
        deleted = 0
        for bucket, named in by_bucket.items():
            for start in range(0, len(named), RETAIN_EXECUTIONS_PER_CALL):
                bite = named[start : start + RETAIN_EXECUTIONS_PER_CALL]
                deleted += int(await self._call(bucket, RETAIN, "delete", *bite))
        return deleted

    async def delete_nodes(self, execution_id: str, node_ids: Sequence[str]) -> int:
        """A few nodes a script call, each call atomic, as delete_executions."""
        self._check_open()
        ids = node_ids_to_delete(execution_id, node_ids)
        bucket = self._bucket(execution_id)
        deleted = 0
        for start in range(0, len(ids), RETAIN_NODES_PER_CALL):
            bite = ids[start : start + RETAIN_NODES_PER_CALL]
            deleted += int(await self._call(bucket, RETAIN, "nodes", execution_id, *bite))
        return deleted

    async def drop_checkpoints(self, execution_id: str, keep: int) -> int:
        self._check_open()
        bucket = self._bucket(execution_id)
        return int(await self._call(bucket, RETAIN, "drop", execution_id, check_keep(keep)))

    # -- leases -------------------------------------------------------------------------

    async def _lease(
        self, op: str, execution_id: str, worker: str, token: int, ms: int, extra: str = ""
    ) -> Any:
        args = (op, execution_id, worker, token, ms, self.ttl_seconds or 0, extra)
        return await self._call(self._bucket(execution_id), lua.LEASE, *args)

    async def acquire_lease(
        self, execution_id: str, worker_id: str, seconds: float, *, take_over: str | None = None
    ) -> Lease:
        ok, held, expires_ms = await self._lease(
            "acquire", execution_id, worker_id, 0, keys.milliseconds(seconds), take_over or ""
        )
        lease = keys.held_lease(execution_id, held, expires_ms)
        if not ok:
            raise held_error(lease, time.time())
        return lease

    async def renew_lease(self, lease: Lease, seconds: float) -> Lease | None:
        ok, held, expires_ms = await self._lease(
            "renew", lease.execution_id, lease.worker_id, lease.token, keys.milliseconds(seconds)
        )
        return keys.held_lease(lease.execution_id, held, expires_ms) if ok else None

    async def release_lease(self, lease: Lease) -> None:
        await self._lease("release", lease.execution_id, lease.worker_id, lease.token, 0)

    async def leases(self) -> list[Lease]:
        listed = await self._calls(
            [
                (b, lua.LEASE, ("list", "", "", 0, 0, 0, keys.scan_pattern(p, "lease:")))
                for b, p in enumerate(self._prefixes)
            ]
        )
        found = [
            keys.held_lease(name.decode(), held, expires_ms)
            for reply in listed
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
        try:
            await self._wire.close()
        except (redis_py().errors.RedisError, OSError) as exc:
            logger.warning("%r: closing the connection pool failed: %s", self, exc)


async def _gather(calls: Sequence[Awaitable[Any]]) -> list[Any]:
    """Every call at once; the first error once all have ended (none left running)."""
    if len(calls) == 1:
        return [await calls[0]]
    replies = await asyncio.gather(*calls, return_exceptions=True)
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return list(replies)
