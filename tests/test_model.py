"""The data model: enums, idempotence, record round trips, validation, snapshots."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest

from livingai import (
    CheckpointCorruptError,
    ErrorInfo,
    ExecutionNode,
    InvalidNodeError,
    NodeRecord,
    NodeType,
    Status,
)
from livingai._core.model import MAX_NESTING


def _node(**fields: Any) -> ExecutionNode:
    """Build a node from loosely typed fields (strings where enums are expected)."""
    fields.setdefault("execution_id", "exec-1")
    fields.setdefault("type", NodeType.PROMPT)
    return ExecutionNode(**fields)


# -- enums ----------------------------------------------------------------------------------


def test_enums_accept_their_string_values() -> None:
    node = _node(type="TOOL", status="SUCCESS")
    assert node.type is NodeType.TOOL
    assert node.status is Status.SUCCESS


@pytest.mark.parametrize("value", [t.value for t in NodeType])
def test_every_node_type_string_is_accepted(value: str) -> None:
    assert _node(type=value).type is NodeType(value)


@pytest.mark.parametrize("value", [s.value for s in Status])
def test_every_status_string_is_accepted(value: str) -> None:
    assert _node(status=value).status is Status(value)


def test_enum_members_are_kept() -> None:
    node = _node(type=NodeType.BRANCH, status=Status.RUNNING)
    assert node.type is NodeType.BRANCH
    assert node.status is Status.RUNNING


def test_defaults() -> None:
    node = _node()
    assert node.status is Status.PENDING
    assert node.parent_id is None
    assert node.metadata == {}
    assert node.created_at.tzinfo is not None
    assert isinstance(node.id, str)
    assert node.id
    assert _node().id != node.id


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "tool"),
        ("type", "WEB"),
        ("type", 3),
        ("type", None),
        ("type", Status.SUCCESS),
        ("status", "DONE"),
        ("status", "success"),
        ("status", 1),
        ("status", NodeType.TOOL),
    ],
)
def test_bad_enum_raises_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidNodeError, match=rf"^{field} must be one of ") as info:
        _node(**{field: value})
    assert repr(value) in str(info.value)


def test_to_record_revalidates_enums_set_after_construction() -> None:
    node = _node()
    node.status = cast(Status, "FINISHED")
    with pytest.raises(InvalidNodeError, match="status"):
        NodeRecord.from_node(node, None)


# -- idempotence ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node_type", "expected"),
    [
        (NodeType.TOOL, False),
        (NodeType.PROMPT, True),
        (NodeType.MEMORY, True),
        (NodeType.BRANCH, True),
    ],
)
def test_idempotent_by_type(node_type: NodeType, expected: bool) -> None:
    assert _node(type=node_type).is_idempotent() is expected


@pytest.mark.parametrize("node_type", list(NodeType))
@pytest.mark.parametrize("flag", [True, False])
def test_explicit_metadata_flag_wins(node_type: NodeType, flag: bool) -> None:
    assert _node(type=node_type, metadata={"idempotent": flag}).is_idempotent() is flag


@pytest.mark.parametrize("flag", [1, 0, "yes", "false", None, [True]])
@pytest.mark.parametrize(
    ("node_type", "expected"), [(NodeType.TOOL, False), (NodeType.PROMPT, True)]
)
def test_non_bool_metadata_flag_is_ignored(
    flag: object, node_type: NodeType, expected: bool
) -> None:
    assert _node(type=node_type, metadata={"idempotent": flag}).is_idempotent() is expected


# -- records ----------------------------------------------------------------------------------


def _full_node() -> ExecutionNode:
    return ExecutionNode(
        execution_id="exec-42",
        type=NodeType.TOOL,
        id="node-7",
        parent_id="node-6",
        status=Status.FAILED,
        created_at=datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5))),
        completed_at=datetime(2024, 5, 1, 7, 31, 0, 1, tzinfo=UTC),
        input={"query": "weather in Zürich", "args": [1, 2.5, None, True, {"nested": ["x"]}]},
        output=["partial", {"rows": 3}],
        error=ErrorInfo(type="TimeoutError", message="took too long", traceback="Traceback..."),
        cost_tokens=1234,
        latency_ms=87.25,
        model="gpt-4o-mini",
        prompt_tokens=1200,
        completion_tokens=34,
        cost=0.00021,
        metadata={"idempotent": False, "tool": "http", "retries": 2, "ratio": 0.5},
        checkpoint=b"\x01framed-blob",
    )


def test_round_trip_of_every_field() -> None:
    node = _full_node()
    record = NodeRecord.from_node(node, node.checkpoint)
    back = record.to_node()
    assert back == node  # the same instants: aware datetimes compare as such
    assert back is not node
    assert back.created_at.utcoffset() == timedelta(0)  # stored in UTC, whatever the zone
    assert back.completed_at is not None
    assert back.completed_at.utcoffset() == timedelta(0)
    assert back.error == ErrorInfo("TimeoutError", "took too long", "Traceback...")
    assert back.checkpoint == b"\x01framed-blob"


def test_record_fields() -> None:
    node = _full_node()
    record = NodeRecord.from_node(node, b"\x00blob")
    assert isinstance(record, NodeRecord)
    assert record.node_id == "node-7"
    assert record.execution_id == "exec-42"
    assert record.parent_id == "node-6"
    assert record.type == "TOOL"
    assert record.status == "FAILED"
    assert record.created_at == "2024-05-01T07:30:15.123456+00:00"  # in UTC
    assert record.completed_at == "2024-05-01T07:31:00.000001+00:00"
    assert record.checkpoint == b"\x00blob"
    assert (record.model, record.prompt_tokens, record.completion_tokens, record.cost) == (
        "gpt-4o-mini",
        1200,
        34,
        0.00021,
    )
    body = json.loads(record.body)
    assert set(body) == {"input", "output", "error", "cost_tokens", "latency_ms", "metadata"}
    assert body["error"] == ["TimeoutError", "took too long", "Traceback..."]
    assert record.size == len(record.body) + len(b"\x00blob")


def test_round_trip_of_a_minimal_node() -> None:
    node = _node(type=NodeType.MEMORY)
    back = NodeRecord.from_node(node, None).to_node()
    assert back == node
    assert back.parent_id is None
    assert back.completed_at is None
    assert back.error is None
    assert back.input is None
    assert back.output is None
    assert back.cost_tokens is None
    assert back.latency_ms is None
    assert back.metadata == {}
    assert back.checkpoint is None


def test_round_trip_of_error_without_traceback() -> None:
    node = _node(status=Status.FAILED, error=ErrorInfo("KeyError", "'k'"))
    back = NodeRecord.from_node(node, None).to_node()
    assert back.error == ErrorInfo("KeyError", "'k'", None)


@pytest.mark.parametrize(
    "value",
    ["text", 0, -3, 2.5, True, None, [], {}, {"a": {"b": [1, "two", None]}}, "ünïcødé ✓"],
)
def test_round_trip_of_json_values(value: Any) -> None:
    node = _node(input=value, output=value, metadata={"value": value})
    back = NodeRecord.from_node(node, None).to_node()
    assert back.input == value
    assert back.output == value
    assert back.metadata == {"value": value}


def test_naive_datetimes_are_treated_as_utc() -> None:
    created = datetime(2024, 1, 2, 3, 4, 5)
    completed = datetime(2024, 1, 2, 3, 4, 6, 500)
    node = _node(created_at=created, completed_at=completed)
    record = NodeRecord.from_node(node, None)
    assert record.created_at == "2024-01-02T03:04:05+00:00"
    back = record.to_node()
    assert back.created_at == created.replace(tzinfo=UTC)
    assert back.created_at.tzinfo is not None
    assert back.completed_at == completed.replace(tzinfo=UTC)


@pytest.mark.parametrize("field", ["created_at", "completed_at"])
@pytest.mark.parametrize("value", ["2024-01-01T00:00:00", 1700000000.0])
def test_non_datetime_times_are_rejected(field: str, value: object) -> None:
    node = _node()
    setattr(node, field, value)
    with pytest.raises(InvalidNodeError, match=field):
        NodeRecord.from_node(node, None)


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", ""), ("id", None), ("execution_id", ""), ("execution_id", 7), ("parent_id", "")],
)
def test_bad_ids_are_rejected(field: str, value: object) -> None:
    node = _node()
    setattr(node, field, value)
    with pytest.raises(InvalidNodeError, match=field):
        NodeRecord.from_node(node, None)


# -- unserialisable values ----------------------------------------------------------------------


class _Opaque:
    pass


UNSERIALISABLE = [
    pytest.param({1, 2}, "set", id="set"),
    pytest.param(object(), "object", id="object"),
    pytest.param(datetime(2024, 1, 1, tzinfo=UTC), "datetime", id="datetime"),
    pytest.param(b"raw", "bytes", id="bytes"),
    pytest.param(_Opaque(), "_Opaque", id="custom-class"),
    pytest.param(frozenset(), "frozenset", id="frozenset"),
    pytest.param(1 + 2j, "complex", id="complex"),
]


@pytest.mark.parametrize(("value", "type_name"), UNSERIALISABLE)
@pytest.mark.parametrize("field", ["input", "output"])
@pytest.mark.parametrize("nested", [False, True], ids=["top", "nested"])
def test_unserialisable_input_output_rejected(
    field: str, value: object, type_name: str, nested: bool
) -> None:
    node = _node(**{field: {"deep": [value]} if nested else value})
    with pytest.raises(InvalidNodeError) as info:
        NodeRecord.from_node(node, None)
    message = str(info.value)
    assert f": {field} must be JSON-serialisable" in message
    assert message.endswith(f"type {type_name}")
    assert node.id in message


@pytest.mark.parametrize(("value", "type_name"), UNSERIALISABLE)
def test_unserialisable_metadata_rejected(value: object, type_name: str) -> None:
    node = _node(metadata={"ok": 1, "bad": value})
    with pytest.raises(InvalidNodeError) as info:
        NodeRecord.from_node(node, None)
    message = str(info.value)
    assert ": metadata must be JSON-serialisable" in message
    assert message.endswith(f"type {type_name}")


def test_metadata_must_be_a_dict() -> None:
    node = _node()
    node.metadata = cast(dict[str, Any], ["idempotent"])
    with pytest.raises(InvalidNodeError, match="metadata must be a dict; got list"):
        NodeRecord.from_node(node, None)


def test_error_must_be_error_info() -> None:
    node = _node()
    node.error = cast(ErrorInfo, ValueError("boom"))
    with pytest.raises(InvalidNodeError, match="error must be an ErrorInfo; got ValueError"):
        NodeRecord.from_node(node, None)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("field", ["input", "output", "metadata", "latency_ms"])
def test_nan_and_infinity_rejected(field: str, bad: float) -> None:
    value: Any = {"score": bad} if field == "metadata" else bad
    if field in ("input", "output"):
        value = [1.0, {"x": bad}]
    node = _node(**{field: value})
    says = "must be a number >= 0" if field == "latency_ms" else "is not valid JSON"
    with pytest.raises(InvalidNodeError, match=rf": {field} {says}"):
        NodeRecord.from_node(node, None)


def test_reference_cycle_rejected() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InvalidNodeError, match="input is not valid JSON: it refers to itself"):
        NodeRecord.from_node(_node(input=loop), None)


def test_deep_nesting_is_told_apart_from_a_cycle() -> None:
    deep: Any = "bottom"
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidNodeError, match="output is nested too deeply") as caught:
        NodeRecord.from_node(_node(output=deep), None)
    assert "cycl" not in str(caught.value)
    shallow: Any = "bottom"
    for _ in range(200):
        shallow = {"k": shallow}
    back = NodeRecord.from_node(_node(output=shallow), None).to_node()
    assert back.output == shallow  # deep but within bounds: kept as is


@pytest.mark.parametrize("tokens", ["12", 1.5, True, -1])
def test_cost_tokens_must_be_a_whole_number(tokens: object) -> None:
    with pytest.raises(InvalidNodeError, match="cost_tokens must be a whole number >= 0"):
        NodeRecord.from_node(_node(cost_tokens=tokens), None)


@pytest.mark.parametrize("latency", ["3 ms", -0.5, math.nan, math.inf, False])
def test_latency_must_be_a_number(latency: object) -> None:
    with pytest.raises(InvalidNodeError, match="latency_ms must be a number >= 0"):
        NodeRecord.from_node(_node(latency_ms=latency), None)


@pytest.mark.parametrize("flag", ["true", 1, 0, "no", None])
def test_an_idempotent_flag_that_is_not_a_bool_is_refused(flag: object) -> None:
    node = _node(metadata={"idempotent": flag})
    if flag is None:
        NodeRecord.from_node(node, None)  # absent and None alike: the type decides
        return
    with pytest.raises(InvalidNodeError, match=r"metadata\['idempotent'\] must be True or False"):
        NodeRecord.from_node(node, None)


@pytest.mark.parametrize(
    ("column", "value", "says"),
    [
        ("type", "BOGUS", "'BOGUS' is not a valid NodeType"),
        ("status", "DONE", "'DONE' is not a valid Status"),
        ("body", "{not json", "JSONDecodeError"),
        ("body", "[1, 2]", "body is a JSON list, not an object"),
        ("created_at", "yesterday", "Invalid isoformat string"),
    ],
)
def test_a_corrupt_stored_field_names_the_node(column: str, value: str, says: str) -> None:
    record = NodeRecord.from_node(_node(), None)
    broken = dataclasses.replace(record, **{column: value})  # type: ignore[arg-type]
    with pytest.raises(CheckpointCorruptError, match=f"node {record.node_id} .*{says}"):
        broken.to_node()


def test_non_string_dict_key_of_unsupported_type_rejected() -> None:
    with pytest.raises(InvalidNodeError, match="output"):
        NodeRecord.from_node(_node(output={(1, 2): "tuple key"}), None)


def test_non_string_dict_keys_are_not_silently_changed() -> None:
    node = _node(metadata={1: "one", None: "none"})
    try:
        back = NodeRecord.from_node(node, None).to_node()
    except InvalidNodeError:
        return  # refusing the node is also correct
    assert back.metadata == node.metadata


# -- snapshots and version ids ---------------------------------------------------------------------


def test_record_is_a_snapshot() -> None:
    node = _node(input={"messages": ["hi"]}, output=None, metadata={"step": 1})
    record = NodeRecord.from_node(node, None)
    body = record.body
    node.input["messages"].append("mutated")
    node.metadata["step"] = 2
    node.metadata["new"] = True
    node.output = "changed"
    node.status = Status.SUCCESS
    node.parent_id = "someone-else"
    assert record.body == body
    back = record.to_node()
    assert back.input == {"messages": ["hi"]}
    assert back.metadata == {"step": 1}
    assert back.output is None
    assert back.status is Status.PENDING
    assert back.parent_id is None


def test_rebuilt_node_does_not_share_state_with_the_record() -> None:
    record = NodeRecord.from_node(_node(input={"k": [1]}), None)
    first = record.to_node()
    first.input["k"].append(2)
    assert record.to_node().input == {"k": [1]}


def test_each_record_gets_a_fresh_version_id() -> None:
    node = _node()
    ids = {NodeRecord.from_node(node, None).version_id for _ in range(100)}
    assert len(ids) == 100
    assert all(isinstance(i, str) and i for i in ids)


# -- ErrorInfo -----------------------------------------------------------------------------------


def _fail_deep() -> None:
    raise ValueError("the tool returned garbage")


def test_error_info_from_raised_exception() -> None:
    try:
        _fail_deep()
    except ValueError as exc:
        info = ErrorInfo.from_exception(exc)
    else:  # pragma: no cover
        pytest.fail("did not raise")
    assert info.type == "ValueError"
    assert info.message == "the tool returned garbage"
    assert info.traceback is not None
    assert info.traceback.startswith("Traceback (most recent call last):")
    assert "_fail_deep" in info.traceback
    assert info.traceback.rstrip().endswith("ValueError: the tool returned garbage")


def test_error_info_from_unraised_exception() -> None:
    info = ErrorInfo.from_exception(KeyError("missing"))
    assert info.type == "KeyError"
    assert info.message == "'missing'"
    assert info.traceback == "KeyError: 'missing'\n"


def test_error_info_is_frozen_and_round_trips() -> None:
    info = ErrorInfo.from_exception(RuntimeError("x"))
    with pytest.raises(AttributeError):
        info.message = "changed"  # type: ignore[misc]
    node = _node(status=Status.FAILED, error=info)
    assert NodeRecord.from_node(node, None).to_node().error == info


# -- strings no store can keep ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input", "a\x00b"),
        ("output", {"deep": ["ok", "nul \x00 inside"]}),
        ("output", {"key\x00": 1}),
        ("metadata", {"note": "\x00"}),
        ("error", ErrorInfo("ValueError", "bad byte \x00")),
        ("input", "lone \ud800 surrogate"),
        ("metadata", {"pair": "\ud83d\ude00"}),  # surrogate code points, not an emoji
    ],
)
def test_strings_no_store_can_keep_are_refused_naming_the_field(field: str, value: Any) -> None:
    node = _node(**{field: value})
    with pytest.raises(InvalidNodeError) as info:
        NodeRecord.from_node(node, None)
    message = str(info.value)
    assert f"node {node.id}: {field} holds a" in message
    assert ("NUL" in message) or ("surrogate" in message)


@pytest.mark.parametrize("field", ["id", "execution_id", "parent_id"])
@pytest.mark.parametrize("value", ["a\x00b", "x\udfff"])
def test_ids_no_store_can_keep_are_refused(field: str, value: str) -> None:
    node = _node()
    setattr(node, field, value)
    with pytest.raises(InvalidNodeError, match=rf"{field} holds a"):
        NodeRecord.from_node(node, None)


@pytest.mark.parametrize(
    "value", ["\\u0000 written out", "\\ud800 written out", "emoji 😀 and ✓", {"\\u0000": "k"}]
)
def test_text_that_only_looks_like_nul_or_surrogates_is_kept(value: Any) -> None:
    node = _node(output=value)
    assert NodeRecord.from_node(node, None).to_node().output == value


def test_a_started_step_that_is_not_safe_to_repeat_is_in_doubt() -> None:
    def node(kind: NodeType, status: Status, **metadata: object) -> ExecutionNode:
        return ExecutionNode(execution_id="x", type=kind, status=status, metadata=dict(metadata))

    assert node(NodeType.TOOL, Status.RUNNING).is_in_doubt()
    assert not node(NodeType.TOOL, Status.SUCCESS).is_in_doubt()
    assert not node(NodeType.TOOL, Status.PENDING).is_in_doubt()  # never started
    assert not node(NodeType.TOOL, Status.RUNNING, idempotent=True).is_in_doubt()
    assert not node(NodeType.PROMPT, Status.RUNNING).is_in_doubt()
    assert node(NodeType.PROMPT, Status.RUNNING, idempotent=False).is_in_doubt()


@pytest.mark.parametrize(("levels", "kept"), [(MAX_NESTING, True), (MAX_NESTING + 1, False)])
def test_the_nesting_bound_is_the_same_on_every_python(levels: int, kept: bool) -> None:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    if kept:
        assert NodeRecord.from_node(_node(input=value), None).to_node().input == value
    else:
        with pytest.raises(InvalidNodeError, match=f"more than {MAX_NESTING} levels"):
            NodeRecord.from_node(_node(input=value), None)
