"""LivingAISaver: LangGraph's checkpointer over any livingai store.

`graph.compile(checkpointer=LivingAISaver(store))` gives a graph durable checkpoints on
SQLite, Redis, PostgreSQL or tiered, in the same log as livingai's runs, so the CLI,
costs and replays see LangGraph threads. Against LangGraph's own savers it stores each
channel value once per version and a growing list only by what it added (see layout),
never reads pickle or unlisted classes (see serde), and keeps what a kept checkpoint
needs when it prunes.

Every put and every write is durable when it returns: a graph killed after a node
finished finds that node's writes on the next invoke and does not run it again.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)

from livingai import (
    CheckpointCorruptError,
    CheckpointEngine,
    CheckpointStore,
    ConfigError,
    ExecutionNode,
    InvalidNodeError,
    NodeType,
    Status,
    open_store,
)
from livingai.adapters.home import Home

from . import layout
from .layout import node_id, pack, unpack
from .lists import RecentLists
from .serde import SafeSerializer, UnsafeValueError
from .values import EMPTY, LIST, SINGLE, VALUE_FORMAT, Entry, Items

T = TypeVar("T")

CHECKPOINT_FORMAT = b"lgc2"  # the checkpoint, its metadata, then the values it introduced
WRITES_FORMAT = b"lgw1"
HELD_ENTRIES = 4096  # checkpoints whose holders are remembered, for their children
MAX_CHAIN = 16  # a list's delta chain; a longer one is stored whole again
LISTS_BYTES = 64 * 1024 * 1024  # memory for recent lists (see lists.py)
STRATEGIES = ("keep_latest", "delete")


class _Stored(NamedTuple):
    """One of a thread's checkpoints, as its node's input tells (no blob decoded)."""

    ns: str
    checkpoint_id: str
    parent_id: str | None
    run_id: str | None
    versions: dict[str, str]
    holders: dict[str, str]  # channel: the checkpoint whose node holds its value
    bases: dict[str, tuple[str, str]]  # channel: (holder, version) its list here extends
    needs_parent: bool  # a delta channel of LangGraph's rebuilds it from its ancestors
    node: ExecutionNode


class LivingAISaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer over a livingai store (or an engine shared with a Runtime).

    `keep_last` keeps that many newest checkpoints of each thread and namespace (pruned as
    puts go by) and `ttl` lets `aretain()` delete threads untouched for that long; both
    keep every checkpoint, value and write that a kept checkpoint needs. `allowed_types`
    adds your own state classes to the types a stored value may rebuild."""

    def __init__(
        self,
        store: CheckpointStore | CheckpointEngine,
        *,
        allowed_types: Iterable[type | tuple[str, str]] = (),
        keep_last: int | None = None,
        ttl: timedelta | None = None,
    ) -> None:
        if keep_last is not None and (isinstance(keep_last, bool) or keep_last < 1):
            raise ConfigError(f"keep_last must be a whole number >= 1; got {keep_last!r}")
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl <= timedelta(0)):
            raise ConfigError(f"ttl must be a positive timedelta; got {ttl!r}")
        self.safe_serde = SafeSerializer(allowed_types)
        super().__init__(serde=self.safe_serde)
        self.owns_engine = not isinstance(store, CheckpointEngine)
        self.engine = store if isinstance(store, CheckpointEngine) else CheckpointEngine(store)
        self.keep_last = keep_last
        self.ttl = ttl
        self._lists = RecentLists(LISTS_BYTES)
        self._held_by: dict[tuple[str, str, str], dict[str, tuple[str, str]]] = {}
        self._puts_since_trim: dict[tuple[str, str], int] = {}
        self._home = Home("livingai-langgraph")  # the loop the engine lives on

    @classmethod
    def from_url(cls, url: str, **options: Any) -> LivingAISaver:
        """A saver over the store a URL names (`sqlite:///path.db`, `redis://...`,
        `postgresql://...`, `tiered:...`); use it as `async with` (or `with`) to close it."""
        return cls(open_store(url), **options)

    def __repr__(self) -> str:
        return f"LivingAISaver({self.engine.store!r})"

    # -- lifecycle and the loop the engine lives on ----------------------------------

    async def __aenter__(self) -> LivingAISaver:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __enter__(self) -> LivingAISaver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def aclose(self) -> None:
        """Close the engine and its store, when the saver made them, and the loop thread
        that sync use started, if any."""
        if self._home.loop is None or self._home.loop.is_closed():
            return  # never used, or closed already
        if self.owns_engine:
            await self._home.run(self.engine.close)
        await asyncio.to_thread(self._home.stop)

    def close(self) -> None:
        if self._home.loop is None or self._home.loop.is_closed():
            return  # never used, or closed already
        if self.owns_engine:
            self._sync(self.engine.close, "close")
        self._home.stop()

    async def _run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` on the loop the engine lives on: the one the saver was first used
        on (an engine belongs to one loop), whichever loop the caller is on."""
        return await self._home.run(work)

    def _sync(self, work: Callable[[], Awaitable[T]], name: str) -> T:
        """A sync method: refused on a running loop's thread (waiting there would block
        the very loop that has to do the work), else run on the engine's loop."""
        return self._home.wait(
            work,
            f"LivingAISaver.{name}()",
            f"use `await saver.a{name}(...)` (graph.ainvoke and graph.astream do)",
        )

    # -- reading ------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._run(lambda: self._get_tuple(config))

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._sync(lambda: self._get_tuple(config), "get_tuple")

    async def _get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread, ns = _where(config)
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id is None:
            checkpoint_id = await self._head(thread, ns)
            if checkpoint_id is None:
                return None
        loaded = await self.engine.load(node_id(thread, layout.checkpoint_key(ns, checkpoint_id)))
        if loaded is None:
            if get_checkpoint_id(config) is not None:
                return None
            stored = [s for s in await self._checkpoints(thread) if s.ns == ns]  # stale head
            if not stored:
                return None
            newest = max(stored, key=lambda s: s.checkpoint_id)
            return await self._tuple(thread, newest.node, None)
        return await self._tuple(thread, loaded.node, loaded.state)

    async def _head(self, thread: str, ns: str) -> str | None:
        # Read from the store, not the engine's cache: another process may have moved it.
        record = await self.engine.store.read(node_id(thread, layout.head_key(ns)))
        if record is None:
            return None
        return str(record.to_node().input["checkpoint_id"])

    async def _tuple(
        self, thread: str, node: ExecutionNode, state: bytes | None
    ) -> CheckpointTuple:
        info = node.input
        ns, checkpoint_id = info["checkpoint_ns"], info["checkpoint_id"]
        if state is None:
            state = await self.engine.decode_state(node)
        where = f"thread {thread!r}, checkpoint {checkpoint_id!r} (namespace {ns!r})"
        try:
            parts = _frame(state, CHECKPOINT_FORMAT, None)
            if len(parts) < 5:
                raise ValueError("it is too short")
            _, ctype, cdata, mtype, mdata = parts[:5]
            held: dict[str, dict[str, Entry] | None] = {checkpoint_id: _entries(parts)}
            checkpoint = self.safe_serde.loads_typed((ctype.decode(), cdata))
            metadata = self.safe_serde.loads_typed((mtype.decode(), mdata))
        except (ValueError, UnsafeValueError) as exc:
            raise CheckpointCorruptError(f"{where}: cannot be read: {exc}") from exc
        versions: dict[str, Any] = dict(info["channel_versions"])
        holders = _holders(info)
        values: dict[str, Any] = {}
        for channel, version in versions.items():
            present, value = await self._value(
                thread, ns, channel, str(version), holders.get(channel), held, where
            )
            if present:
                values[channel] = value
        checkpoint["channel_versions"] = versions
        checkpoint["channel_values"] = values
        parent = info.get("parent_checkpoint_id")
        return CheckpointTuple(
            config=_config(thread, ns, checkpoint_id),
            checkpoint=checkpoint,
            metadata=metadata,
            parent_config=None if parent is None else _config(thread, ns, parent),
            pending_writes=await self._pending_writes(thread, ns, checkpoint_id, where),
        )

    async def _value(
        self,
        thread: str,
        ns: str,
        channel: str,
        version: str,
        holder: str | None,
        held: dict[str, dict[str, Entry] | None],
        where: str,
    ) -> tuple[bool, Any]:
        """(present, value) of a channel at a version; absent when never stored."""
        what = f"{where}, channel {channel!r} (version {version!r})"
        try:
            kind, items, depth = await self._items(thread, ns, channel, version, holder, held, 0)
            if kind == EMPTY:
                return False, None
            if kind == SINGLE:
                return True, self.safe_serde.loads_typed(items[0])
            key = node_id(thread, layout.value_key(ns, channel, version))
            self._lists.put(key, items, depth, holder, version, (thread, ns, channel))
            return True, [self.safe_serde.loads_typed(item) for item in items]
        except _Missing:
            return False, None
        except (ValueError, UnsafeValueError) as exc:
            raise CheckpointCorruptError(f"{what}: cannot be read: {exc}") from exc

    async def _items(
        self,
        thread: str,
        ns: str,
        channel: str,
        version: str,
        holder: str | None,
        held: dict[str, dict[str, Entry] | None],
        depth: int,
    ) -> tuple[bytes, Items, int]:
        """A value's kind, its items (serialised, a delta resolved) and how many versions
        back its nearest whole copy is. Found in a recent list, the holder checkpoint's
        entries, or the value's own node. `held`: the entries of the checkpoints read so
        far for this call, by id (None: gone), so each is loaded and parsed once."""
        key = node_id(thread, layout.value_key(ns, channel, version))
        recent = self._lists.get(key)
        if recent is not None:
            return LIST, recent.items, recent.depth
        entry = None
        if holder is not None:
            if holder not in held:
                loaded = await self.engine.load(node_id(thread, layout.checkpoint_key(ns, holder)))
                held[holder] = (
                    None
                    if loaded is None
                    else _entries(_frame(loaded.state, CHECKPOINT_FORMAT, None))
                )
            entries = held[holder]
            if entries is not None:
                entry = entries.get(channel)
                if entry is None:
                    raise ValueError(f"checkpoint {holder!r} holds no value of it")
        if entry is None:  # moved to a node of its own by retention, or never stored
            alone = await self.engine.load(key)
            if alone is not None:
                parts = _frame(alone.state, VALUE_FORMAT, 2)
                entry = Entry.unpack(parts[1])
        if entry is None:
            if depth:
                raise ValueError(f"version {version!r} of it, which a later one extends, is gone")
            raise _Missing
        if entry.kind != LIST or entry.base is None:
            return entry.kind, entry.items, 0
        if depth >= MAX_CHAIN:
            raise ValueError(f"its versions extend each other more than {MAX_CHAIN} deep")
        base_holder, base_version = entry.base
        base_kind, prefix, base_depth = await self._items(
            thread, ns, channel, base_version, base_holder, held, depth + 1
        )
        if base_kind != LIST or len(prefix) != entry.count:
            raise ValueError(f"version {version!r} extends a version that is not its list")
        items = prefix + entry.items
        self._lists.put(key, items, base_depth + 1, holder, version)
        return LIST, items, base_depth + 1

    async def _pending_writes(
        self, thread: str, ns: str, checkpoint_id: str, where: str
    ) -> builtins.list[PendingWrite]:
        versions = await self.engine.history(node_id(thread, layout.writes_key(ns, checkpoint_id)))
        kept: dict[tuple[str, int], tuple[str, tuple[str, bytes], str]] = {}
        for version in versions:
            state = await self.engine.decode_state(version)
            try:
                parts = _frame(state, WRITES_FORMAT, None)[1:]
                if len(parts) % 6:
                    raise ValueError("a write has missing fields")
            except ValueError as exc:
                raise CheckpointCorruptError(f"{where}: its writes cannot be read: {exc}") from exc
            for at in range(0, len(parts), 6):
                task, idx, channel, kind, data, path = parts[at : at + 6]
                key = (task.decode(), int(idx))
                if key[1] >= 0 and key in kept:
                    continue  # a task's regular writes are kept as first stored
                kept[key] = (channel.decode(), (kind.decode(), data), path.decode())
        ordered = sorted(kept.items(), key=lambda kv: writes_sort_key(kv[1][2], *kv[0]))
        writes: builtins.list[PendingWrite] = []
        for (task_id, _), (name, typed, _) in ordered:
            try:
                writes.append((task_id, name, self.safe_serde.loads_typed(typed)))
            except (ValueError, UnsafeValueError) as exc:
                raise CheckpointCorruptError(
                    f"{where}, pending write of task {task_id!r} to channel {name!r}: "
                    f"cannot be read: {exc}"
                ) from exc
        return writes

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await self._run(lambda: self._list(config, filter, before, limit))
        for item in found:
            yield item

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from self._sync(lambda: self._list(config, filter, before, limit), "list")

    async def _list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> builtins.list[CheckpointTuple]:
        if config is None:
            threads = await self.engine.list_executions()
            ns, checkpoint_id = None, None
        else:
            threads = [_where(config)[0]]
            ns = config["configurable"].get("checkpoint_ns")
            checkpoint_id = get_checkpoint_id(config)
        before_id = None if before is None else get_checkpoint_id(before)
        found: builtins.list[CheckpointTuple] = []
        for thread in threads:
            stored = sorted(
                await self._checkpoints(thread), key=lambda s: s.checkpoint_id, reverse=True
            )
            for s in stored:
                if limit is not None and len(found) >= limit:
                    return found
                if ns is not None and s.ns != ns:
                    continue
                if checkpoint_id is not None and s.checkpoint_id != checkpoint_id:
                    continue
                if before_id is not None and s.checkpoint_id >= before_id:
                    continue
                item = await self._tuple(thread, s.node, None)
                if filter and not all(item.metadata.get(k) == v for k, v in filter.items()):
                    continue
                found.append(item)
        return found

    async def _checkpoints(self, thread: str) -> builtins.list[_Stored]:
        return (await self._read_thread(thread))[0]

    async def _read_thread(self, thread: str) -> tuple[builtins.list[_Stored], set[str]]:
        """A thread's checkpoints, and the keys of its values moved to nodes of their own
        (see _keep_only): one read of the thread's nodes."""
        found = []
        moved = set()
        for node in await self.engine.list_nodes(thread):
            key = layout.key_of(thread, node.id)
            if key is not None and key.startswith(layout.VALUE):
                moved.add(key)
            if key is None or not key.startswith(layout.CHECKPOINT):
                continue
            info = node.input
            counters = info.get("delta_counters") or {}
            found.append(
                _Stored(
                    ns=info["checkpoint_ns"],
                    checkpoint_id=info["checkpoint_id"],
                    parent_id=info.get("parent_checkpoint_id"),
                    run_id=info.get("run_id"),
                    versions={c: str(v) for c, v in info["channel_versions"].items()},
                    holders=_holders(info),
                    bases={c: (h, v) for c, (h, v) in (info.get("bases") or {}).items()},
                    needs_parent=any(_counted(v) for v in counters.values()),
                    node=node,
                )
            )
        return found, moved

    # -- writing ------------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._run(lambda: self._put(config, checkpoint, metadata, new_versions))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._sync(lambda: self._put(config, checkpoint, metadata, new_versions), "put")

    async def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread, ns = _where(config)
        checkpoint_id = str(checkpoint["id"])
        parent = config["configurable"].get("checkpoint_id")
        where = f"thread {thread!r}, checkpoint {checkpoint_id!r} (namespace {ns!r})"
        rest: dict[str, Any] = {
            k: v for k, v in checkpoint.items() if k not in ("channel_values", "channel_versions")
        }
        values = checkpoint["channel_values"]
        metadata = get_checkpoint_metadata(config, metadata)
        entries = [
            self._entry(thread, ns, checkpoint_id, channel, str(version), values, where)
            for channel, version in new_versions.items()
        ]
        try:
            ctype, cdata = self.safe_serde.dumps_typed(rest)
            mtype, mdata = self.safe_serde.dumps_typed(metadata)
        except Exception as exc:
            raise InvalidNodeError(f"{where}: the checkpoint cannot be serialised: {exc}") from exc
        versions = dict(checkpoint["channel_versions"])
        inherited = {} if parent is None else await self._held(thread, ns, str(parent))
        holders = {
            channel: inherited[channel][1]
            for channel, version in versions.items()
            if channel not in new_versions
            and channel in inherited
            and inherited[channel][0] == str(version)
        }
        run_id = metadata.get("run_id")
        counters = metadata.get("counters_since_delta_snapshot")
        info = {
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
            "parent_checkpoint_id": None if parent is None else str(parent),
            "run_id": None if run_id is None else str(run_id),
            "step": metadata.get("step"),
            "source": metadata.get("source"),
            "channel_versions": versions,
            "stored": [e.channel for e in entries],  # their values are in this node
            "holders": holders,  # the checkpoints holding the other channels' values
            "bases": {e.channel: list(e.base) for e in entries if e.base is not None},
            "delta_counters": counters if isinstance(counters, dict) else None,
        }
        name = f"checkpoint, step {info['step']} ({info['source']})" + (f" in {ns}" if ns else "")
        cp_node = _node(
            thread, layout.checkpoint_key(ns, checkpoint_id), "checkpoint", name, **info
        )
        blob = pack(
            [
                CHECKPOINT_FORMAT,
                ctype.encode(),
                cdata,
                mtype.encode(),
                mdata,
                *(e.pack() for e in entries),
            ]
        )
        head = _head(thread, ns, checkpoint_id)
        # Two durable saves, queued in this order: the checkpoint's now (save queues before
        # it first waits), the head's when its task starts. The head never names a
        # checkpoint that is not stored.
        moved = asyncio.ensure_future(self.engine.save(head, durable=True))
        try:
            await self.engine.save(cp_node, blob, durable=True)
        except BaseException:
            moved.cancel()  # a refused checkpoint: its head is not queued (or is harmless:
            raise  # a head naming a missing checkpoint is passed over when read)
        await moved
        self._remember_held(thread, ns, checkpoint_id, versions, holders, entries)
        if self.keep_last is not None:
            await self._trim_now_and_then(thread, ns)
        return _config(thread, ns, checkpoint_id)

    async def _held(self, thread: str, ns: str, checkpoint_id: str) -> dict[str, tuple[str, str]]:
        """{channel: (version, holder checkpoint id)} of a stored checkpoint: what a child
        of it finds its unchanged values in."""
        found = self._held_by.get((thread, ns, checkpoint_id))
        if found is not None:
            return found
        loaded = await self.engine.load(node_id(thread, layout.checkpoint_key(ns, checkpoint_id)))
        if loaded is None:
            return {}
        info = loaded.node.input
        holders = _holders(info)
        return {
            c: (str(v), holders[c]) for c, v in info["channel_versions"].items() if c in holders
        }

    def _remember_held(
        self,
        thread: str,
        ns: str,
        checkpoint_id: str,
        versions: dict[str, Any],
        holders: dict[str, str],
        entries: builtins.list[Entry],
    ) -> None:
        held = {c: (str(versions[c]), h) for c, h in holders.items()}
        held.update({e.channel: (str(versions[e.channel]), checkpoint_id) for e in entries})
        self._held_by[(thread, ns, checkpoint_id)] = held
        while len(self._held_by) > HELD_ENTRIES:
            self._held_by.pop(next(iter(self._held_by)))

    def _entry(
        self,
        thread: str,
        ns: str,
        checkpoint_id: str,
        channel: str,
        version: str,
        values: dict[str, Any],
        where: str,
    ) -> Entry:
        """The entry storing a channel's new version, a list as what it added when the
        newest stored version of the channel is a prefix of it."""
        slot = (thread, ns, channel)
        if channel not in values:
            self._lists.forget_slot(slot)
            return Entry(channel, EMPTY, [])
        value = values[channel]
        try:
            if not isinstance(value, list):
                self._lists.forget_slot(slot)
                return Entry(channel, SINGLE, [self.safe_serde.dumps_typed(value)])
            items = [self.safe_serde.dumps_typed(item) for item in value]
        except Exception as exc:
            raise InvalidNodeError(
                f"{where}, channel {channel!r}: the value cannot be serialised: {exc}"
            ) from exc
        key = node_id(thread, layout.value_key(ns, channel, version))
        last = self._lists.newest(slot)
        if (
            last is not None
            and last.holder is not None
            and 0 < len(last.items) <= len(items)
            and last.depth < MAX_CHAIN
            and items[: len(last.items)] == last.items
        ):
            count = len(last.items)
            self._lists.put(key, items, last.depth + 1, checkpoint_id, version, slot)
            return Entry(channel, LIST, items[count:], (last.holder, last.version), count)
        self._lists.put(key, items, 0, checkpoint_id, version, slot)
        return Entry(channel, LIST, items)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._run(lambda: self._put_writes(config, writes, task_id, task_path))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._sync(lambda: self._put_writes(config, writes, task_id, task_path), "put_writes")

    async def _put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> None:
        thread, ns = _where(config)
        checkpoint_id = str(config["configurable"]["checkpoint_id"])
        parts: builtins.list[bytes] = [WRITES_FORMAT]
        for idx, (channel, value) in enumerate(writes):
            try:
                kind, data = self.safe_serde.dumps_typed(value)
            except Exception as exc:
                raise InvalidNodeError(
                    f"thread {thread!r}, checkpoint {checkpoint_id!r} (namespace {ns!r}), "
                    f"write of task {task_id!r} to channel {channel!r}: the value cannot be "
                    f"serialised: {exc}"
                ) from exc
            index = WRITES_IDX_MAP.get(channel, idx)
            parts += [task_id.encode(), str(index).encode(), channel.encode()]
            parts += [kind.encode(), data, task_path.encode()]
        node = _node(
            thread,
            layout.writes_key(ns, checkpoint_id),
            "writes",
            f"writes of task {task_id[:8]}: {', '.join(channel for channel, _ in writes)}",
            checkpoint_ns=ns,
            checkpoint_id=checkpoint_id,
            task_id=task_id,
            channels=[channel for channel, _ in writes],
        )
        await self.engine.save(node, pack(parts), durable=True)

    def get_next_version(self, current: str | int | float | None, channel: None) -> str:
        """A zero-padded counter (ordered as text) and a random tail: a version is unique
        even where a fork gives a channel the same counter twice."""
        if current is None:
            number = 0
        elif isinstance(current, str):
            number = int(current.split(".")[0])
        else:
            number = int(current)
        return f"{number + 1:032}.{random.random():016}"

    # -- deleting, copying, pruning ---------------------------------------------------

    async def adelete_thread(self, thread_id: str) -> None:
        await self._run(lambda: self._delete_threads([str(thread_id)]))

    def delete_thread(self, thread_id: str) -> None:
        self._sync(lambda: self._delete_threads([str(thread_id)]), "delete_thread")

    async def _delete_threads(self, threads: Sequence[str]) -> None:
        for thread in threads:
            self._lists.forget_thread(thread)
        await self.engine.delete_executions(list(threads))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._run(lambda: self._delete_for_runs(run_ids))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._sync(lambda: self._delete_for_runs(run_ids), "delete_for_runs")

    async def _delete_for_runs(self, run_ids: Sequence[str]) -> None:
        runs = {str(r) for r in run_ids}
        if not runs:
            return
        for thread in await self.engine.list_executions():
            stored, moved = await self._read_thread(thread)
            doomed = {s.checkpoint_id for s in stored if s.run_id in runs}
            if doomed:
                kept = [s for s in stored if s.checkpoint_id not in doomed]
                await self._keep_only(thread, stored, moved, kept)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._run(lambda: self._copy_thread(str(source_thread_id), str(target_thread_id)))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._sync(
            lambda: self._copy_thread(str(source_thread_id), str(target_thread_id)), "copy_thread"
        )

    async def _copy_thread(self, source: str, target: str) -> None:
        copies = []
        for node in await self.engine.versions(source):
            key = layout.key_of(source, node.id)
            if key is None:
                continue
            parent = None if node.parent_id is None else layout.key_of(source, node.parent_id)
            copies.append(
                dataclasses.replace(
                    node,
                    id=node_id(target, key),
                    execution_id=target,
                    parent_id=None if parent is None else node_id(target, parent),
                )
            )
        self._lists.forget_thread(target)
        await asyncio.gather(*(self.engine.save(n, durable=True) for n in copies))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._run(lambda: self._prune(thread_ids, strategy))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._sync(lambda: self._prune(thread_ids, strategy), "prune")

    async def _prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
        threads = [str(t) for t in thread_ids]
        if strategy == "delete":
            await self._delete_threads(threads)
            return
        for thread in threads:
            await self._trim(thread, 1)

    async def aretain(
        self, thread_ids: Sequence[str] | None = None, *, now: datetime | None = None
    ) -> dict[str, int]:
        """Apply `ttl` and `keep_last` to these threads (default: every thread): threads
        whose newest checkpoint is older than the TTL are deleted, the others keep their
        newest `keep_last` checkpoints per namespace. Run it now and then (a cron job, say).
        `now` (default: the clock) is what the TTL counts back from.
        Returns {"threads_deleted": n, "checkpoints_deleted": n}."""
        return await self._run(lambda: self._retain(thread_ids, now or datetime.now(UTC)))

    def retain(
        self, thread_ids: Sequence[str] | None = None, *, now: datetime | None = None
    ) -> dict[str, int]:
        return self._sync(lambda: self.aretain(thread_ids, now=now), "retain")

    async def _retain(self, thread_ids: Sequence[str] | None, now: datetime) -> dict[str, int]:
        threads = (
            await self.engine.list_executions()
            if thread_ids is None
            else [str(t) for t in thread_ids]
        )
        report = {"threads_deleted": 0, "checkpoints_deleted": 0}
        cutoff = None if self.ttl is None else now - self.ttl
        for thread in threads:
            stored, moved = await self._read_thread(thread)
            if not stored:
                continue
            if cutoff is not None and max(s.node.created_at for s in stored) < cutoff:
                await self._delete_threads([thread])
                report["threads_deleted"] += 1
            elif self.keep_last is not None:
                report["checkpoints_deleted"] += await self._trim(
                    thread, self.keep_last, (stored, moved)
                )
        return report

    async def _trim_now_and_then(self, thread: str, ns: str) -> None:
        """keep_last, applied once every keep_last puts: pruning costs a scan of the
        thread, spread thin this way."""
        assert self.keep_last is not None
        slot = (thread, ns)
        self._puts_since_trim[slot] = self._puts_since_trim.get(slot, 0) + 1
        if self._puts_since_trim[slot] >= self.keep_last:
            self._puts_since_trim[slot] = 0
            await self._trim(thread, self.keep_last)

    async def _trim(
        self,
        thread: str,
        keep: int,
        read: tuple[builtins.list[_Stored], set[str]] | None = None,
    ) -> int:
        """Keep the newest `keep` checkpoints of each namespace and what they need
        (`read`: the thread as _read_thread gave it, when the caller has it already)."""
        stored, moved = read if read is not None else await self._read_thread(thread)
        by_ns: dict[str, builtins.list[_Stored]] = {}
        for s in stored:
            by_ns.setdefault(s.ns, []).append(s)
        kept = [
            s
            for group in by_ns.values()
            for s in sorted(group, key=lambda s: s.checkpoint_id, reverse=True)[:keep]
        ]
        return await self._keep_only(thread, stored, moved, kept)

    async def _keep_only(
        self,
        thread: str,
        stored: builtins.list[_Stored],
        alone: set[str],
        kept: builtins.list[_Stored],
    ) -> int:
        """Delete every checkpoint of `stored` but `kept` and the ancestors a kept one
        needs (a delta channel of LangGraph's rebuilds itself from its ancestors' writes),
        with their writes, the values no kept checkpoint needs, and move each head to its
        namespace's newest kept checkpoint. `alone`: the keys of the values already moved
        to nodes of their own. Returns the checkpoints deleted."""
        by_id = {(s.ns, s.checkpoint_id): s for s in stored}
        keep = {(s.ns, s.checkpoint_id) for s in kept}
        for s in kept:
            at: _Stored | None = s
            while at is not None and at.needs_parent and at.parent_id is not None:
                at = by_id.get((at.ns, at.parent_id))
                if at is not None:
                    keep.add((at.ns, at.checkpoint_id))
        doomed = [s for s in stored if (s.ns, s.checkpoint_id) not in keep]
        if not doomed:
            return 0
        needed: set[str] = set()  # the values that must be in nodes of their own
        moves: builtins.list[tuple[str, str, str, str | None]] = []
        seen: set[tuple[str, str, str]] = set()

        def need(ns: str, channel: str, version: str, holder: str | None) -> None:
            if (ns, channel, version) in seen:
                return
            seen.add((ns, channel, version))
            if holder is not None and (ns, holder) in keep:
                base = by_id[(ns, holder)].bases.get(channel)
                if base is not None:  # its list extends an earlier version: keep that too
                    need(ns, channel, base[1], base[0])
                return
            key = layout.value_key(ns, channel, version)
            needed.add(key)
            if key not in alone:
                moves.append((ns, channel, version, holder))

        for ns, checkpoint_id in keep:
            s = by_id[(ns, checkpoint_id)]
            for channel, version in s.versions.items():
                need(ns, channel, version, s.holders.get(channel))
        # Values a kept checkpoint needs from a checkpoint about to go move first, whole.
        held: dict[str, dict[str, Entry] | None] = {}
        for ns, channel, version, holder in moves:
            try:
                kind, items, _ = await self._items(thread, ns, channel, version, holder, held, 0)
            except _Missing:
                continue
            key = layout.value_key(ns, channel, version)
            blob = pack([VALUE_FORMAT, Entry(channel, kind, items).pack()])
            value = _node(
                thread,
                key,
                "value",
                f"value of {channel}",
                checkpoint_ns=ns,
                channel=channel,
                version=version,
            )
            await self.engine.save(value, blob, durable=True)
        gone = [layout.checkpoint_key(s.ns, s.checkpoint_id) for s in doomed]
        gone += [layout.writes_key(s.ns, s.checkpoint_id) for s in doomed]
        gone += [key for key in alone if key not in needed]
        heads: builtins.list[ExecutionNode] = []
        for ns in {s.ns for s in doomed}:
            left = [c for n, c in keep if n == ns]
            if left:
                heads.append(_head(thread, ns, max(left)))
            else:
                gone.append(layout.head_key(ns))
        # The heads move first: a reader never follows one to a deleted checkpoint.
        await asyncio.gather(*(self.engine.save(head, durable=True) for head in heads))
        await self.engine.delete_nodes(thread, [node_id(thread, key) for key in gone])
        self._lists.forget_thread(thread)  # its lists may name holders just deleted
        for slot in [k for k in self._held_by if k[0] == thread]:
            del self._held_by[slot]
        return len(doomed)


class _Missing(Exception):
    """A value node that was never stored (a channel the checkpoint lists but no put
    of this saver gave a value for)."""


def _node(thread: str, key: str, kind: str, name: str, **info: Any) -> ExecutionNode:
    """One of the saver's records: `kind` and `name` are what `livingai show` lists."""
    return ExecutionNode(
        execution_id=thread,
        type=NodeType.MEMORY,
        id=node_id(thread, key),
        status=Status.SUCCESS,
        input=info,
        metadata={"langgraph": kind, "kind": kind, "name": name},
    )


def _head(thread: str, ns: str, checkpoint_id: str) -> ExecutionNode:
    name = "head" + (f" of {ns}" if ns else "")
    return _node(thread, layout.head_key(ns), "head", name, checkpoint_id=checkpoint_id)


def _where(config: RunnableConfig) -> tuple[str, str]:
    configurable = config.get("configurable") or {}
    if configurable.get("thread_id") is None:
        raise ValueError(
            "the config has no configurable.thread_id: pass "
            '{"configurable": {"thread_id": ...}} to invoke, stream or get_state'
        )
    return str(configurable["thread_id"]), str(configurable.get("checkpoint_ns") or "")


def _config(thread: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def _frame(state: bytes | None, kind: bytes, parts: int | None) -> list[bytes]:
    if state is None:
        raise ValueError("it has no state")
    found = unpack(state)
    if not found or found[0] != kind or (parts is not None and len(found) != parts):
        raise ValueError(f"it is not a {kind.decode()} frame this saver wrote")
    return found


def _counted(counter: object) -> bool:
    """A delta channel's counters since its last snapshot, (updates, supersteps): any
    above zero means the checkpoint rebuilds the channel from its ancestors."""
    if isinstance(counter, list | tuple):
        return any(bool(x) for x in counter)
    return bool(counter)


def _holders(info: dict[str, Any]) -> dict[str, str]:
    """{channel: checkpoint id whose node holds its value} from a checkpoint node's input:
    its own for the values it stored, another's for those it inherited."""
    holders = dict(info.get("holders") or {})
    holders.update(dict.fromkeys(info.get("stored") or (), info["checkpoint_id"]))
    return holders


def _entries(parts: list[bytes]) -> dict[str, Entry]:
    """The value entries of a checkpoint's state, unpacked (see _frame), by channel."""
    return {entry.channel: entry for entry in map(Entry.unpack, parts[5:])}
