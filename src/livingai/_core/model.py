"""The execution log's data model and its mapping to store records (no I/O here)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import operator
import random
import re
import traceback as tb
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeGuard, TypeVar, cast

from .errors import CheckpointCorruptError, InvalidNodeError

_E = TypeVar("_E", "NodeType", "Status")


class NodeType(StrEnum):
    PROMPT = "PROMPT"
    TOOL = "TOOL"
    MEMORY = "MEMORY"
    BRANCH = "BRANCH"


class Status(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


def new_id() -> str:
    """128 random bits as 32 hex digits. Not uuid4: its os.urandom call releases the GIL
    on the event loop's hot path, and getting it back behind busy threads stalls the loop."""
    return f"{random.getrandbits(128):032x}"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ErrorInfo:
    """What went wrong in a failed step."""

    type: str
    message: str
    traceback: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        return cls(
            type=type(exc).__name__,
            message=str(exc),
            traceback="".join(tb.format_exception(exc)),
        )


@dataclass
class ExecutionNode:
    """One step of an agent run; every save appends a new version of it."""

    execution_id: str
    type: NodeType
    id: str = field(default_factory=new_id)
    parent_id: str | None = None
    status: Status = Status.PENDING
    created_at: datetime = field(default_factory=utcnow)
    completed_at: datetime | None = None
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    cost_tokens: int | None = None
    latency_ms: float | None = None
    model: str | None = None  # the model a step called, for costs and replays
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None  # in US dollars
    metadata: dict[str, Any] = field(default_factory=dict)
    checkpoint: bytes | None = None

    def __post_init__(self) -> None:
        self.type = _enum(NodeType, self.type, "type")
        self.status = _enum(Status, self.status, "status")

    def to_dict(self) -> dict[str, Any]:
        """The node as plain JSON values, for export: times in ISO 8601, the framed
        checkpoint in base64, every other field as stored."""
        return {
            "id": self.id,
            "execution_id": self.execution_id,
            "parent_id": self.parent_id,
            "type": self.type.value,
            "status": self.status.value,
            "created_at": self.created_at.isoformat(),
            "completed_at": None if self.completed_at is None else self.completed_at.isoformat(),
            "input": self.input,
            "output": self.output,
            "error": None if self.error is None else dataclasses.asdict(self.error),
            "cost_tokens": self.cost_tokens,
            "latency_ms": self.latency_ms,
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "metadata": self.metadata,
            "checkpoint": None
            if self.checkpoint is None
            else base64.b64encode(self.checkpoint).decode("ascii"),
        }

    def is_idempotent(self) -> bool:
        """Safe to run again on recovery: an explicit metadata flag wins, else not for TOOL."""
        flag = self.metadata.get("idempotent")
        if isinstance(flag, bool):
            return flag
        return self.type is not NodeType.TOOL

    def is_in_doubt(self) -> bool:
        """Started and never recorded how it ended, though not safe to run again (a
        tool): it may or may not have acted."""
        return not self.is_idempotent() and self.status is Status.RUNNING


def _enum(kind: type[_E], value: object, name: str) -> _E:
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return kind(value)
    allowed = ", ".join(member.value for member in kind)
    raise InvalidNodeError(f"{name} must be one of {allowed}; got {value!r}")


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One stored version of a node, as stores hold it: plain strings and bytes.

    `version_id` is unique per save, so a store can ignore a batch it is sent again after
    a lost acknowledgement. `body` is a JSON object with input, output, error,
    cost_tokens, latency_ms and metadata. The model and the usage of a model call are
    columns of their own, so that stores add costs up without reading bodies.
    `checkpoint` is the codec-framed blob or None.
    """

    version_id: str
    node_id: str
    execution_id: str
    parent_id: str | None
    type: str
    status: str
    created_at: str
    completed_at: str | None
    body: str
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None
    checkpoint: bytes | None

    @property
    def size(self) -> int:
        return len(self.body) + (len(self.checkpoint) if self.checkpoint else 0)

    @classmethod
    def from_node(cls, node: ExecutionNode, checkpoint: bytes | None = None) -> NodeRecord:
        """Validate and snapshot `node` as a new version (a fresh version_id), with the
        framed `checkpoint` blob: later changes to the node do not alter what is stored.
        Raises InvalidNodeError naming the field no store could keep."""
        return _to_record(node, checkpoint)

    def to_node(self) -> ExecutionNode:
        """A fresh ExecutionNode of this version, its checkpoint still framed."""
        return _from_record(self)

    def as_row(self) -> Row:
        """The fields in RECORD_COLUMNS order, as SQL stores write them."""
        return cast(Row, _ROW(self))

    @classmethod
    def from_row(cls, row: Sequence[object]) -> NodeRecord:
        """A record from a database row in RECORD_COLUMNS order (drivers may hand back
        memoryview or bytearray blobs, text subclasses, numbers as text)."""
        values = [
            None if value is None else convert(value)
            for convert, value in zip(_FROM_DATABASE, row, strict=True)
        ]
        return cls(*cast(Row, values))

    def with_checkpoint(self, blob: bytes) -> NodeRecord:
        """This version with its state blob set (the engine encodes after snapshotting)."""
        return NodeRecord(*cast(Row, (*_ROW(self)[:-1], blob)))


def _refuse(obj: object) -> Any:
    raise TypeError(type(obj).__name__)


# How deeply lists and dicts may nest in a stored value. json.dumps' own limit follows the
# interpreter (about 1,000 levels on 3.11 and 3.12, about 10,000 on 3.13): a value one of
# them stores, another could not read back. This one holds on all, with room for the stack.
MAX_NESTING = 500
_CONTAINERS = (dict, list, tuple)


class _TooDeep(Exception):
    """A value nests more than MAX_NESTING lists and dicts."""


def _check_keys(obj: Any, levels: int = MAX_NESTING) -> None:
    """json.dumps would silently turn 1 or None keys into strings: refuse them, and
    nesting deeper than `levels`. A loop, not recursion: json.dumps has already refused
    cycles."""
    if not isinstance(obj, _CONTAINERS):
        return
    stack: list[tuple[Any, int]] = [(obj, 1)]  # a container, and how many hold it (itself too)
    while stack:
        item, depth = stack.pop()
        if depth > levels:
            raise _TooDeep
        children = item
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    raise TypeError(f"{type(key).__name__} (as a dict key)")
            children = item.values()
        stack.extend((child, depth + 1) for child in children if isinstance(child, _CONTAINERS))


def _dumps(value: Any, levels: int = MAX_NESTING) -> str:
    body = json.dumps(value, allow_nan=False, separators=(",", ":"), default=_refuse)
    _check_keys(value, levels)
    return body


def _json_field(node: ExecutionNode, name: str, value: Any) -> str:
    try:
        return _dumps(value)
    except (RecursionError, _TooDeep):  # json.dumps' own limit, or ours
        raise InvalidNodeError(
            f"node {node.id}: {name} is nested too deeply to store as JSON "
            f"(more than {MAX_NESTING} levels of lists and dicts)"
        ) from None
    except TypeError as exc:
        raise InvalidNodeError(
            f"node {node.id}: {name} must be JSON-serialisable; "
            f"it holds a value of type {exc.args[0]}"
        ) from None
    except ValueError as exc:  # NaN or infinity, or a reference cycle
        reason = "it refers to itself (a cycle)" if "ircular" in str(exc) else str(exc)
        raise InvalidNodeError(f"node {node.id}: {name} is not valid JSON: {reason}") from None


# Stores cannot keep every Python string: PostgreSQL text and jsonb refuse NUL, and UTF-8
# (every store's encoding) has no surrogate code points. A record holding one would fail
# in the store on every retry, so it is refused at save() instead, naming the field.
# json.dumps (ensure_ascii) writes both as \\u escapes: only a body holding one of these
# escapes needs the walk over the values.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def _unstorable(text: str) -> str | None:
    """Why no store can keep `text`, or None when it can."""
    if "\x00" in text:
        return "holds a NUL character (\\x00), which stores such as PostgreSQL cannot keep"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "holds a surrogate code point, which is not valid Unicode (UTF-8)"
    return None


def _find_unstorable(value: Any) -> tuple[str, str] | None:
    """The first string (a value or a dict key) in `value` no store can keep, and why."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            why = _unstorable(item)
            if why is not None:
                return item, why
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def _check_storable(node: ExecutionNode, fields: dict[str, Any], body: str) -> None:
    if _SUSPECT_ESCAPE.search(body) is None:  # the hot path: one scan, ~1 us per 2 KiB
        return
    for name, value in fields.items():
        found = _find_unstorable(value)
        if found is not None:
            text, why = found
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise InvalidNodeError(f"node {node.id}: {name} {why}: {shown!r}")


def _check_id(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidNodeError(f"{name} must be a non-empty string; got {value!r}")
    why = _unstorable(value)
    if why is not None:
        raise InvalidNodeError(f"{name} {why}; got {value!r}")
    return value


def _check_time(value: object, name: str) -> datetime:
    """In UTC, so that stored times sort and group by day alike in every store."""
    if not isinstance(value, datetime):
        raise InvalidNodeError(f"{name} must be a datetime; got {type(value).__name__}")
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _to_record(node: ExecutionNode, checkpoint: bytes | None) -> NodeRecord:
    _check_id(node.id, "id")
    _check_id(node.execution_id, "execution_id")
    if node.parent_id is not None:
        _check_id(node.parent_id, "parent_id")
    node_type = _enum(NodeType, node.type, "type")
    status = _enum(Status, node.status, "status")
    if not isinstance(node.metadata, dict):
        raise InvalidNodeError(
            f"node {node.id}: metadata must be a dict; got {type(node.metadata).__name__}"
        )
    error = node.error
    if error is not None and not isinstance(error, ErrorInfo):
        raise InvalidNodeError(
            f"node {node.id}: error must be an ErrorInfo; got {type(error).__name__}"
        )
    _check_usage(node)
    flag = node.metadata.get("idempotent")
    if flag is not None and not isinstance(flag, bool):
        raise InvalidNodeError(
            f"node {node.id}: metadata['idempotent'] must be True or False; got {flag!r}"
        )
    fields = {
        "input": node.input,
        "output": node.output,
        "error": None if error is None else [error.type, error.message, error.traceback],
        "cost_tokens": node.cost_tokens,
        "latency_ms": node.latency_ms,
        "metadata": node.metadata,
    }
    try:  # one pass on the hot path; on failure, find the field to name
        body = _dumps(fields, MAX_NESTING + 1)  # + 1: the dict holding the fields
    except (TypeError, ValueError, RecursionError, _TooDeep):
        for name, value in fields.items():
            _json_field(node, name, value)
        raise
    _check_storable(node, fields, body)
    completed = node.completed_at
    return NodeRecord(
        version_id=new_id(),
        node_id=node.id,
        execution_id=node.execution_id,
        parent_id=node.parent_id,
        type=node_type.value,
        status=status.value,
        created_at=_check_time(node.created_at, "created_at").isoformat(),
        completed_at=None
        if completed is None
        else _check_time(completed, "completed_at").isoformat(),
        body=body,
        model=None if node.model is None else _check_id(node.model, "model"),
        prompt_tokens=_count(node, "prompt_tokens", node.prompt_tokens),
        completion_tokens=_count(node, "completion_tokens", node.completion_tokens),
        cost=_amount(node, "cost", node.cost),
        checkpoint=checkpoint,
    )


def _check_usage(node: ExecutionNode) -> None:
    _count(node, "cost_tokens", node.cost_tokens)
    _amount(node, "latency_ms", node.latency_ms)


def _count(node: ExecutionNode, name: str, value: object) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise InvalidNodeError(
            f"node {node.id}: {name} must be a whole number >= 0 or None; got {value!r}"
        )
    return value


def is_amount(value: object) -> TypeGuard[int | float]:
    """A finite number >= 0 (not a bool): a cost, a price."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _amount(node: ExecutionNode, name: str, value: object) -> float | None:
    if value is None:
        return None
    if not is_amount(value):
        raise InvalidNodeError(
            f"node {node.id}: {name} must be a number >= 0 or None; got {value!r}"
        )
    return float(value)


def _from_record(record: NodeRecord) -> ExecutionNode:
    """The node a stored version holds; CheckpointCorruptError naming the node and what
    is wrong when the store hands back something no save could have written."""
    try:
        return _rebuild(record)
    except Exception as exc:  # json, datetime, enum or shape errors: each its own type
        raise CheckpointCorruptError(
            f"node {record.node_id} (version {record.version_id}) is corrupt in the store: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _rebuild(record: NodeRecord) -> ExecutionNode:
    body = json.loads(record.body)
    if not isinstance(body, dict):
        raise ValueError(f"body is a JSON {type(body).__name__}, not an object")
    error = body.get("error")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("metadata is not a JSON object")
    return ExecutionNode(
        id=record.node_id,
        execution_id=record.execution_id,
        parent_id=record.parent_id,
        type=NodeType(record.type),
        status=Status(record.status),
        created_at=datetime.fromisoformat(record.created_at),
        completed_at=None
        if record.completed_at is None
        else datetime.fromisoformat(record.completed_at),
        input=body.get("input"),
        output=body.get("output"),
        error=None if error is None else ErrorInfo(*error),
        cost_tokens=body.get("cost_tokens"),
        latency_ms=body.get("latency_ms"),
        model=record.model,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        cost=record.cost,
        metadata=metadata,
        checkpoint=record.checkpoint,
    )


def corrupt_node(record: NodeRecord, error: CheckpointCorruptError) -> ExecutionNode:
    """What a listing shows for a version that cannot be read: a FAILED node whose error
    says why, taken as a TOOL (a possible side effect) when its type is unreadable, so
    that recovery never runs it again unasked."""
    try:
        kind = NodeType(record.type)
    except ValueError:
        kind = NodeType.TOOL
    return ExecutionNode(
        id=record.node_id,
        execution_id=record.execution_id,
        type=kind,
        parent_id=record.parent_id,
        status=Status.FAILED,
        error=ErrorInfo(type(error).__name__, str(error)),
        metadata={"corrupt": True, "version_id": record.version_id, "idempotent": False},
    )


# The one list of a record's columns, in the order SQL stores read and write them.
RECORD_COLUMNS = tuple(f.name for f in dataclasses.fields(NodeRecord))
_ROW = operator.attrgetter(*RECORD_COLUMNS)
Row = tuple[
    str, str, str, str | None, str, str, str, str | None, str,
    str | None, int | None, int | None, float | None, bytes | None,
]  # fmt: skip
USAGE_COLUMNS = ("model", "prompt_tokens", "completion_tokens", "cost")


def _blob(value: object) -> bytes | None:
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None


_CONVERT: dict[str, Any] = {"prompt_tokens": int, "completion_tokens": int, "cost": float}
_FROM_DATABASE = [
    _blob if name == "checkpoint" else _CONVERT.get(name, str) for name in RECORD_COLUMNS
]
