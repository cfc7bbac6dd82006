"""LivingAISession: an OpenAI Agents SDK `Session` on any livingai store.

`Runner.run(agent, text, session=LivingAISession(store, "user-42"))` keeps the
conversation in the same append-only log as livingai's runs (SQLite, Redis, PostgreSQL,
tiered or memory), so the CLI, the web UI and retention see it too.

The session is execution `session:<session_id>`. Nothing stored is ever changed or
deleted: each operation appends one MEMORY node version, numbered one above the highest
number it read (metadata `session_seq`), and the items are the fold of the versions in
the order of those numbers (see `fold`):

    add_items(items)   session_op "add"; output: the call's items
    pop_item()         session_op "pop"; input: {"node": the add node, "index": the
                       item's place in it}; output: the item popped
    clear_session()    session_op "clear": the items of every version before it are gone

These names are data: a session written today must read the same tomorrow, and a test
pins them.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, NamedTuple, TypeVar, cast

from agents.items import TResponseInputItem
from agents.memory import SessionABC, SessionSettings
from agents.memory.session_settings import coerce_session_settings

from livingai import (
    CheckpointEngine,
    CheckpointStore,
    ConfigError,
    ExecutionNode,
    InvalidNodeError,
    Lease,
    LeaseHeldError,
    LeaseStore,
    NodeRecord,
    NodeType,
    Status,
    open_store,
)

T = TypeVar("T")

#: What a tool call with no output in the session gets as its output, so the model is
#: told the call may have acted instead of being sent a call it never saw answered.
INTERRUPTED_OUTPUT = (
    "interrupted: this tool call was cut short before it returned a result, so it may "
    "or may not have acted; check before calling it again"
)
EXECUTION_PREFIX = "session:"
OP = "session_op"  # the metadata key naming what a version does
SEQ = "session_seq"  # and its number, one above the highest it saw (see fold)
ADD, POP, CLEAR = "add", "pop", "clear"
# Tool calls whose output is a plain string, so an explicit one can stand in for it.
OUTPUT_TYPE = {
    "function_call": "function_call_output",
    "custom_tool_call": "custom_tool_call_output",
}
_WORKER = f"livingai-session@{socket.gethostname()}:{os.getpid()}"
_RETRY_FIRST_SECONDS = 0.002
_RETRY_MAX_SECONDS = 0.05

# One lock per (engine, session) in this process: pops and clears of a session made
# through one engine queue here instead of retrying against the store's lease.
_LOCKS: weakref.WeakKeyDictionary[CheckpointEngine, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def execution_id_of(session_id: str) -> str:
    """The execution that holds a session's log."""
    return f"{EXECUTION_PREFIX}{session_id}"


class LivingAISession(SessionABC):
    """An OpenAI Agents SDK session over a livingai store (or an engine shared with a
    Runtime); a store given here is closed by `close()` / `async with`.

    `get_items(limit=None)`: every item, oldest first; with `limit` (or
    `session_settings.limit`), the latest `limit` in chronological order, as
    `get_items()[-limit:]`. `add_items(items)`: durable when it returns (all or none:
    one version). `pop_item()`: removes and returns the most recent item stored, None
    if there is none. `clear_session()`: every item is gone.

    Atomic under concurrent writers, in one process or many: the items of one
    add_items call are one version, so they land together, contiguous, or not at all;
    adds take no lock, so concurrent ones never wait for or lose one another, and an add
    that began after another returned sorts after it (its number is above every one it
    read). pop_item and clear_session hold the session's lease in the store (retrying
    for up to `wait_seconds` while another writer holds it, LeaseHeldError after) and
    write under it (fenced): two pops never return the same item, and a pop whose lease
    was taken over after `lease_seconds` is refused (FencedError) rather than popping
    twice. A mutation that began finishes even if its caller is cancelled, and then the
    cancellation is raised, as the SDK's own sessions do.

    Interrupted tool calls: a `function_call` (or `custom_tool_call`) item that no later
    item answers with its output (the process died or the run was cancelled while the
    tool ran) would make every later turn fail at the API. `get_items` never returns
    one bare: right after it comes `{"type": "function_call_output", "call_id": ...,
    "output": INTERRUPTED_OUTPUT}`, which reads "interrupted: this tool call was cut
    short before it returned a result, so it may or may not have acted; check before
    calling it again". The SDK would otherwise drop the call from the model's input, and
    the model would not know it had asked for a tool that may have acted. That output
    is not stored: once an item with the real output is added, the real one shows
    instead, and pop_item removes stored items only (popping the call removes both).

    The session uses its engine's event loop: an engine belongs to the loop it is first
    used on (one `asyncio.run`, or `Runner.run_sync`, which keeps its thread's loop).
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        engine_or_store: CheckpointEngine | CheckpointStore,
        session_id: str,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        lease_seconds: float = 10.0,
        wait_seconds: float = 30.0,
    ) -> None:
        if not isinstance(engine_or_store, CheckpointEngine | CheckpointStore):
            raise ConfigError(
                "LivingAISession keeps a session in a CheckpointEngine or a CheckpointStore; "
                f"got {engine_or_store!r}"
            )
        _check_seconds("lease_seconds", lease_seconds)
        _check_seconds("wait_seconds", wait_seconds)
        self.execution_id = _check_session_id(session_id)
        if isinstance(engine_or_store, CheckpointEngine):
            self.engine, self.owns_engine = engine_or_store, False
        else:
            self.engine, self.owns_engine = CheckpointEngine(engine_or_store), True
        if not isinstance(self.engine.store, LeaseStore):
            raise ConfigError(
                f"{self.engine.store!r} keeps no leases; LivingAISession needs a store that "
                "does for pop_item and clear_session (every store of livingai does)"
            )
        size, most = len(self.execution_id.encode()), self.engine.limits.max_id_bytes
        if size > most:
            raise ConfigError(
                f"LivingAISession: session_id is too long: {self.execution_id!r} takes "
                f"{size} bytes as UTF-8, and {self.engine.store!r} keeps ids of up to {most}"
            )
        self.session_id = session_id
        self.session_settings = (
            SessionSettings()
            if session_settings is None
            else coerce_session_settings(session_settings)
        )
        self.lease_seconds = float(lease_seconds)
        self.wait_seconds = float(wait_seconds)

    @classmethod
    def from_url(cls, url: str, session_id: str, **options: Any) -> LivingAISession:
        """A session in the store a URL names (`sqlite:///agent.db`, `redis://...`,
        `postgresql://...`, `tiered:...`); close it with `close()` or `async with`."""
        return cls(open_store(url), session_id, **options)

    def __repr__(self) -> str:
        return f"LivingAISession({self.engine.store!r}, {self.session_id!r})"

    async def __aenter__(self) -> LivingAISession:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the engine and its store, when the session made them (given a store)."""
        if self.owns_engine:
            await self.engine.close()

    # -- the Session protocol ----------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 0
        ):
            raise ConfigError(
                f"session {self.session_id!r}: limit must be None or a whole number >= 0; "
                f"got {limit!r}"
            )
        items = answered(list((await self._log()).items.values()))
        if limit is not None:
            items = items[-limit:] if limit else []
        return cast(list[TResponseInputItem], items)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        if not isinstance(items, list):
            raise TypeError(
                f"session {self.session_id!r}: add_items takes a list of items (dicts); "
                f"got {type(items).__name__}"
            )
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise TypeError(
                    f"session {self.session_id!r}: add_items: item {index} must be a dict "
                    f"(a Responses input item); got {type(item).__name__}; nothing was stored"
                )
        if not items:
            return
        await _finish(self._add(items))

    async def pop_item(self) -> TResponseInputItem | None:
        return await _finish(self._leased(self._pop))

    async def clear_session(self) -> None:
        await _finish(self._leased(self._clear))

    # -- the log ---------------------------------------------------------------------

    async def _log(self) -> Folded:
        return fold(await self.engine.versions(self.execution_id))

    def _node(self, op: str, seq: int, *, input: Any = None, output: Any = None) -> ExecutionNode:
        now = datetime.now(UTC)
        return ExecutionNode(
            execution_id=self.execution_id,
            type=NodeType.MEMORY,
            status=Status.SUCCESS,
            created_at=now,
            completed_at=now,
            input=input,
            output=output,
            metadata={OP: op, SEQ: seq, "name": f"session.{op}"},
        )

    async def _add(self, items: list[TResponseInputItem]) -> None:
        # Numbered after every version stored now, so an add that began after another
        # returned comes after it, in every store's order (see fold).
        seq = (await self._log()).last_seq + 1
        try:
            await self.engine.save(self._node(ADD, seq, output=list(items)), durable=True)
        except InvalidNodeError as exc:  # refused before anything was queued
            raise self._unstorable(items, exc) from None

    def _unstorable(self, items: list[TResponseInputItem], exc: InvalidNodeError) -> Exception:
        """The save's refusal, naming the item at fault when one alone is."""
        for index, item in enumerate(items):
            probe = ExecutionNode(self.execution_id, NodeType.MEMORY, output=[item])
            try:
                NodeRecord.from_node(probe)
            except InvalidNodeError as alone:
                text, head = str(alone), f"node {probe.id}: output "
                why = text[len(head) :] if text.startswith(head) else f"cannot be stored: {text}"
                return InvalidNodeError(
                    f"session {self.session_id!r}: add_items: item {index} {why}; "
                    "nothing was stored"
                )
        return InvalidNodeError(
            f"session {self.session_id!r}: add_items: {exc}; nothing was stored"
        )

    # -- under the lease ---------------------------------------------------------------

    async def _leased(self, work: Callable[[Lease], Awaitable[T]]) -> T:
        """Run `work` holding the session's lease (one holder at a time, in every
        process); its writes are fenced with it."""
        async with self._local_lock():
            lease = await self._acquire()
            try:
                return await work(lease)
            finally:
                await self.engine.release_lease(lease)

    def _local_lock(self) -> asyncio.Lock:
        locks = _LOCKS.setdefault(self.engine, {})
        return locks.setdefault(self.execution_id, asyncio.Lock())

    async def _acquire(self) -> Lease:
        # A worker id of its own for every acquisition: a holder's own id would take the
        # lease back at once, and two pops in one process must exclude each other too.
        worker = f"{_WORKER}/{random.getrandbits(64):016x}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        delay = _RETRY_FIRST_SECONDS
        while True:
            try:
                return await self.engine.acquire_lease(
                    self.execution_id, worker, self.lease_seconds
                )
            except LeaseHeldError as exc:
                if loop.time() >= deadline:
                    raise LeaseHeldError(
                        f"session {self.session_id!r}: another writer ({exc.holder}) held "
                        f"its lease for {self.wait_seconds:g}s; try again later",
                        execution_id=self.execution_id,
                        holder=exc.holder,
                        expires_at=exc.expires_at,
                    ) from exc
            await asyncio.sleep(delay * (0.5 + random.random()))  # backoff, not sync
            delay = min(delay * 2, _RETRY_MAX_SECONDS)

    async def _pop(self, lease: Lease) -> TResponseInputItem | None:
        log = await self._log()
        if not log.items:
            return None
        (node, index), item = next(reversed(log.items.items()))
        tombstone = self._node(
            POP, log.last_seq + 1, input={"node": node, "index": index}, output=item
        )
        await self.engine.save(tombstone, durable=True, fence=lease)
        return cast(TResponseInputItem, item)

    async def _clear(self, lease: Lease) -> None:
        clear = self._node(CLEAR, (await self._log()).last_seq + 1)
        await self.engine.save(clear, durable=True, fence=lease)


class Folded(NamedTuple):
    """A session's log, read: its items now, oldest first, each keyed by (its add node,
    its place in it); and the highest number any version has."""

    items: dict[tuple[str, int], dict[str, Any]]
    last_seq: int


def fold(versions: list[ExecutionNode]) -> Folded:
    """The items that a session's versions leave (pure: no I/O).

    Versions are taken in the order of their numbers (`session_seq`, ties by node id),
    not the order a store lists them: a tiered store lists what reached its cold store
    first, so versions that processes wrote at once may come back in another order, and
    PostgreSQL numbers rows when they are inserted, not when they commit. Each version
    is numbered one above the highest it saw, so one made after another was stored
    sorts after it. A pop removes the item it names wherever it comes in the list.
    """
    numbered: list[tuple[int, str, ExecutionNode]] = []
    popped: set[tuple[Any, Any]] = set()
    last_seq = 0
    for version in versions:
        seq = version.metadata.get(SEQ)
        if not isinstance(seq, int) or isinstance(seq, bool):
            continue  # not a session's version
        last_seq = max(last_seq, seq)
        op = version.metadata.get(OP)
        if op == POP and isinstance(version.input, dict):
            popped.add((version.input.get("node"), version.input.get("index")))
        elif op in (ADD, CLEAR):
            numbered.append((seq, version.id, version))
    numbered.sort(key=lambda entry: entry[:2])
    items: dict[tuple[str, int], dict[str, Any]] = {}
    seen: set[str] = set()
    for _, node_id, version in numbered:
        if version.metadata.get(OP) == CLEAR:
            items.clear()
        elif node_id not in seen and isinstance(version.output, list):
            seen.add(node_id)
            for index, item in enumerate(version.output):
                if isinstance(item, dict) and (node_id, index) not in popped:
                    items[(node_id, index)] = item
    return Folded(items, last_seq)


def answered(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items with an explicit INTERRUPTED_OUTPUT right after each tool call that no
    later item answers (by type and call_id)."""
    last_output: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        if item.get("type") in OUTPUT_TYPE.values() and isinstance(item.get("call_id"), str):
            last_output[(item["type"], item["call_id"])] = index
    out: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        out.append(item)
        output_type = OUTPUT_TYPE.get(str(item.get("type")))
        call_id = item.get("call_id")
        if output_type is None or not isinstance(call_id, str):
            continue
        if last_output.get((output_type, call_id), -1) < index:
            out.append({"type": output_type, "call_id": call_id, "output": INTERRUPTED_OUTPUT})
    return out


async def _finish(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end even if the caller is cancelled meanwhile (half a pop would
    lose the item, and a lease left held blocks the session), then raise the
    cancellation."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise  # the work itself was cancelled
            cancelled = True
            continue
        if cancelled:
            raise asyncio.CancelledError
        return result


def _check_seconds(name: str, value: object) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 < value < float("inf")
    ):
        raise ConfigError(f"LivingAISession: {name} must be a number of seconds > 0; got {value!r}")


def _check_session_id(session_id: object) -> str:
    """The session's execution id, after checking that a store can keep it as an id."""
    if not isinstance(session_id, str) or not session_id:
        raise ConfigError(
            f"LivingAISession: session_id must be a non-empty string; got {session_id!r}"
        )
    execution_id = execution_id_of(session_id)
    try:
        NodeRecord.from_node(ExecutionNode(execution_id, NodeType.MEMORY))
    except InvalidNodeError as exc:
        raise ConfigError(
            f"LivingAISession: session_id {session_id!r} cannot be stored: {exc}"
        ) from None
    return execution_id
