"""Executions as a store indexes them, so that listing and recovery cost what they
return, not what was ever run (no I/O here).

Each execution has one entry: when its first version was created, and, for a run, what
its run record (node `<execution>/run`, which the runtime writes) says last: the agent and
the status. A store that is an IndexStore keeps the entries in the same atomic write that
stores the versions, and answers two questions from them: the runs not finished (PENDING
or RUNNING), and a page of executions, newest first, filtered. For a store that is not
one, the engine works the same answers out from its logs (`entry_of`, `page_of`): the old
cost, the same answers.

Pages are ordered by (started_at, execution_id), newest first. The cursor of a page is
where the next one starts: the last entry's key, as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import ConfigError
from .model import NodeRecord, Status

OPEN = frozenset({Status.PENDING.value, Status.RUNNING.value})  # a run not finished
MAX_PAGE = 1000  # entries one page holds at most


def run_record_id(execution_id: str) -> str:
    """The id of an execution's run record: what listing and recovery read its agent and
    status from (the runtime names it so)."""
    return f"{execution_id}/run"


def is_run_record(record: NodeRecord) -> bool:
    return record.node_id == run_record_id(record.execution_id)


def agent_of(record: NodeRecord) -> str:
    """The agent a run record names ("" when it names none)."""
    try:
        metadata = json.loads(record.body).get("metadata") or {}
    except (ValueError, AttributeError):
        return ""
    agent = metadata.get("agent") if isinstance(metadata, dict) else None
    return agent if isinstance(agent, str) else ""


@dataclass(frozen=True)
class ExecutionEntry:
    """An execution at a glance, as the index holds it. `started_at`: its first
    version's created_at (ISO-8601, UTC, as records hold it); `agent` and `status`: its
    run record's newest version's ("" and None for an execution that is not a run)."""

    execution_id: str
    started_at: str
    agent: str = ""
    status: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.started_at, self.execution_id)

    @property
    def cursor(self) -> str:
        """The cursor of the page that starts after this entry."""
        return encode_cursor(self)

    @classmethod
    def of(cls, execution_id: str, versions: Sequence[NodeRecord]) -> ExecutionEntry | None:
        """The entry of an execution from its versions in append order (None: it has
        none): what an index holds, worked out from the log."""
        if not versions:
            return None
        entry = cls(execution_id, versions[0].created_at)
        for version in versions:
            entry = entry.updated(version)
        return entry

    def updated(self, record: NodeRecord) -> ExecutionEntry:
        """This entry once `record`, a newer version of the execution, is stored."""
        if not is_run_record(record):
            return self
        return ExecutionEntry(self.execution_id, self.started_at, agent_of(record), record.status)


@dataclass(frozen=True)
class ExecutionPage:
    """Up to `limit` entries, newest first; `cursor` asks for the page after this one
    (None: there is none)."""

    entries: list[ExecutionEntry]
    cursor: str | None

    @classmethod
    def of(cls, entries: Iterable[ExecutionEntry], query: PageQuery) -> ExecutionPage:
        """The page `query` asks for out of `entries` in any order: what a store without
        an index (or one in memory) answers with."""
        after = query.after
        wanted = sorted(
            (e for e in entries if query.matches(e) and (after is None or e.key < after)),
            key=lambda e: e.key,
            reverse=True,
        )
        return cls.newest_first(wanted[: query.limit + 1], query.limit)

    @classmethod
    def newest_first(cls, entries: Sequence[ExecutionEntry], limit: int) -> ExecutionPage:
        """A page of `limit` out of up to limit + 1 matching entries, newest first: the
        one past the limit says there is a next page."""
        kept = list(entries[:limit])
        more = len(entries) > limit and bool(kept)
        return cls(kept, encode_cursor(kept[-1]) if more else None)


@dataclass(frozen=True)
class PageQuery:
    """What a page asks for: `limit` entries after `cursor` (None: from the newest),
    of runs with this status and agent, started in [since, until) (UTC)."""

    limit: int = 50
    cursor: str | None = None
    status: str | None = None
    agent: str | None = None
    since: str | None = None  # ISO-8601 UTC, as started_at
    until: str | None = None

    @property
    def after(self) -> tuple[str, str] | None:
        """The key the page starts below (exclusive), from the cursor."""
        return None if self.cursor is None else decode_cursor(self.cursor)

    def matches(self, entry: ExecutionEntry) -> bool:
        return (
            (self.status is None or entry.status == self.status)
            and (self.agent is None or entry.agent == self.agent)
            and (self.since is None or entry.started_at >= self.since)
            and (self.until is None or entry.started_at < self.until)
        )


def page_query(
    *,
    limit: int = 50,
    cursor: str | None = None,
    status: Status | str | None = None,
    agent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> PageQuery:
    """A PageQuery from what a caller gives, checked: a clear error naming what is wrong."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise ConfigError(f"limit must be a whole number from 1 to {MAX_PAGE}; got {limit!r}")
    if cursor is not None:
        decode_cursor(cursor)
    if agent is not None and not isinstance(agent, str):
        raise ConfigError(f"agent must be a string or None; got {agent!r}")
    return PageQuery(
        limit,
        cursor,
        None if status is None else _status(status),
        agent,
        None if since is None else _moment(since, "since"),
        None if until is None else _moment(until, "until"),
    )


def encode_cursor(entry: ExecutionEntry) -> str:
    """Where the page after `entry` starts: its key, as text (`<started_at>|<id>`)."""
    return f"{entry.started_at}|{entry.execution_id}"


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The key a cursor stands for. Any text is a position in the order of keys (the
    part before the first "|" compared with started_at, the rest with the id), so a
    cursor no page gave lists what sorts below it rather than failing."""
    if not isinstance(cursor, str):
        raise ConfigError(f"cursor must be a page's cursor (a string); got {cursor!r}")
    started_at, _, execution_id = cursor.partition("|")
    return started_at, execution_id


def _status(status: Status | str) -> str:
    try:
        return Status(str(status).upper()).value
    except ValueError:
        names = ", ".join(member.value for member in Status)
        raise ConfigError(f"status must be one of {names}; got {status!r}") from None


def _moment(value: datetime, name: str) -> str:
    if not isinstance(value, datetime):
        raise ConfigError(f"{name} must be a datetime; got {value!r}")
    aware = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.isoformat()
