"""The store conformance suite: every store, ours or a third party's, must pass it.

Each test is a plain `async def test_x(store)` taking a fresh, empty, open store.
CONFORMANCE_TESTS hold for every store; LEASE_TESTS for a store that keeps leases (a
LeaseStore), which durable runs need; USAGE_TESTS for one that adds usage up itself (a
UsageStore); RETENTION_TESTS for one that can delete executions or single nodes of one
and drop old checkpoints (a RetentionStore). Run them against your store with pytest:

    import pytest
    from livingai.testing import CONFORMANCE_TESTS

    @pytest.mark.parametrize("check", CONFORMANCE_TESTS, ids=lambda t: t.__name__)
    async def test_my_store(check, my_store):
        await check(my_store)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from livingai import (
    CheckpointStore,
    ClosedError,
    ExecutionNode,
    FencedError,
    Lease,
    LeaseHeldError,
    LeaseStore,
    NodeRecord,
    NodeType,
    RetentionStore,
    Status,
    UsageRow,
    UsageStore,
)

Check = Callable[[CheckpointStore], Awaitable[None]]


def make_record(
    execution_id: str,
    node_id: str | None = None,
    *,
    checkpoint: bytes | None = None,
    output: Any = None,
    type: NodeType = NodeType.PROMPT,
) -> NodeRecord:
    """A valid record, as the engine would hand it to a store."""
    node = ExecutionNode(execution_id=execution_id, type=type, status=Status.SUCCESS, output=output)
    if node_id is not None:
        node.id = node_id
    return NodeRecord.from_node(node, checkpoint)


def assert_same(got: NodeRecord | None, want: NodeRecord) -> None:
    """Equal as stored data; the JSON body may be re-formatted by the store (JSONB)."""
    assert got is not None, f"node {want.node_id} version {want.version_id} is missing"
    for field in dataclasses.fields(NodeRecord):
        if field.name != "body":
            assert getattr(got, field.name) == getattr(want, field.name), f"{field.name} differs"
    assert json.loads(got.body) == json.loads(want.body), "body differs"


def _ids(records: list[NodeRecord]) -> list[str]:
    return [record.node_id for record in records]


async def test_read_returns_appended_record(store: CheckpointStore) -> None:
    record = make_record("exec-read", output={"answer": 42, "text": "héllo ✓"}, checkpoint=b"\x00s")
    await store.append([record])
    assert_same(await store.read(record.node_id), record)


async def test_read_of_unknown_node_is_none(store: CheckpointStore) -> None:
    assert await store.read("no-such-node") is None
    assert await store.history("no-such-node") == []
    assert await store.latest_checkpoint("no-such-execution") is None
    assert await store.list_nodes("no-such-execution") == []


async def test_new_version_never_changes_an_old_one(store: CheckpointStore) -> None:
    first = make_record("exec-versions", "node-v", output="first", checkpoint=b"\x00one")
    second = make_record("exec-versions", "node-v", output="second")
    await store.append([first])
    await store.append([second])
    assert_same(await store.read("node-v"), second)
    history = await store.history("node-v")
    assert len(history) == 2
    assert_same(history[0], first)
    assert_same(history[1], second)


async def test_list_nodes_gives_latest_versions_in_first_seen_order(
    store: CheckpointStore,
) -> None:
    a1 = make_record("exec-list", "a", output=1)
    b = make_record("exec-list", "b", output=2)
    a2 = make_record("exec-list", "a", output=3)
    c = make_record("exec-list", "c", output=4)
    other = make_record("exec-other", "z")
    await store.append([a1, b])
    await store.append([other, a2, c])
    nodes = await store.list_nodes("exec-list")
    assert _ids(nodes) == ["a", "b", "c"]
    assert_same(nodes[0], a2)
    assert _ids(await store.list_nodes("exec-other")) == ["z"]


async def test_list_versions_gives_every_version_in_append_order(store: CheckpointStore) -> None:
    a1 = make_record("exec-versions-all", "a", output=1, checkpoint=b"\x00a")
    b1 = make_record("exec-versions-all", "b", output=2)
    a2 = make_record("exec-versions-all", "a", output=3)
    await store.append([a1, b1])
    await store.append([make_record("exec-elsewhere", "y"), a2])
    versions = await store.list_versions("exec-versions-all")
    assert [v.version_id for v in versions] == [a1.version_id, b1.version_id, a2.version_id]
    assert_same(versions[0], a1)
    assert await store.list_versions("no-such-execution") == []


async def test_latest_checkpoint_is_the_last_version_with_a_blob(store: CheckpointStore) -> None:
    checkpointed = [make_record("exec-ckpt", f"n{i}", checkpoint=bytes([0, i])) for i in range(30)]
    await store.append(checkpointed[:10])
    await store.append(checkpointed[10:])
    await store.append([make_record("exec-ckpt", "no-blob")])  # later, but without a checkpoint
    await store.append([make_record("exec-elsewhere", "x", checkpoint=b"\x00x")])
    assert_same(await store.latest_checkpoint("exec-ckpt"), checkpointed[-1])
    # An earlier node checkpointed again becomes the latest.
    again = make_record("exec-ckpt", "n3", checkpoint=b"\x00again")
    await store.append([again])
    assert_same(await store.latest_checkpoint("exec-ckpt"), again)


async def test_list_executions_in_first_seen_order(store: CheckpointStore) -> None:
    await store.append([make_record("exec-b"), make_record("exec-a")])
    await store.append([make_record("exec-b"), make_record("exec-c")])
    assert await store.list_executions() == ["exec-b", "exec-a", "exec-c"]


async def test_batch_keeps_its_order(store: CheckpointStore) -> None:
    batch = [make_record(f"exec-batch-{i % 3}", f"node-{i}", output=i) for i in range(120)]
    await store.append(batch)
    for execution in range(3):
        want = [r.node_id for r in batch if r.execution_id == f"exec-batch-{execution}"]
        assert _ids(await store.list_nodes(f"exec-batch-{execution}")) == want


async def test_a_batch_sent_twice_is_stored_once(store: CheckpointStore) -> None:
    batch = [make_record("exec-retry", f"r{i}", checkpoint=b"\x00r") for i in range(5)]
    await store.append(batch)
    await store.append(batch)  # a retry after a lost acknowledgement
    for record in batch:
        assert len(await store.history(record.node_id)) == 1
    assert len(await store.list_nodes("exec-retry")) == 5


async def test_blobs_round_trip_byte_exact(store: CheckpointStore) -> None:
    blobs = [b"\x00", b"\x01\x00\x00\xff" * 3, os.urandom(1024 * 1024), bytes(range(256)) * 64]
    records = [make_record("exec-blobs", f"blob-{i}", checkpoint=b) for i, b in enumerate(blobs)]
    await store.append(records)
    for record in records:
        got = await store.read(record.node_id)
        assert got is not None
        assert got.checkpoint == record.checkpoint


async def test_empty_append_is_a_no_op(store: CheckpointStore) -> None:
    await store.append([])
    assert await store.list_executions() == []


async def test_concurrent_appends_all_land_in_order(store: CheckpointStore) -> None:
    async def agent(number: int) -> None:
        for step in range(10):
            await store.append([make_record(f"exec-agent-{number}", f"a{number}-s{step}")])

    await asyncio.gather(*(agent(n) for n in range(20)))
    for number in range(20):
        nodes = await store.list_nodes(f"exec-agent-{number}")
        assert _ids(nodes) == [f"a{number}-s{step}" for step in range(10)]


async def test_use_after_close_raises_closed_error(store: CheckpointStore) -> None:
    await store.append([make_record("exec-close")])
    await store.close()
    await store.close()  # closing twice is harmless
    try:
        await store.append([make_record("exec-close")])
    except ClosedError:
        return
    raise AssertionError("append after close() did not raise ClosedError")


# -- leases ---------------------------------------------------------------------------

LeaseCheck = Callable[[LeaseStore], Awaitable[None]]


async def test_a_lease_is_held_by_one_worker(store: LeaseStore) -> None:
    first = await store.acquire_lease("exec-lease", "worker-a", 30)
    assert (first.execution_id, first.worker_id) == ("exec-lease", "worker-a")
    assert first.expires_at > time.time() + 20
    refused: LeaseHeldError | None = None
    try:
        await store.acquire_lease("exec-lease", "worker-b", 30)
    except LeaseHeldError as exc:
        refused = exc
    assert refused is not None, "a second worker took a live lease"
    assert refused.holder == "worker-a"
    assert "worker-a" in str(refused)
    other = await store.acquire_lease("exec-other", "worker-b", 30)  # one lease an execution
    assert other.worker_id == "worker-b"
    assert sorted(lease.execution_id for lease in await store.leases()) == [
        "exec-lease",
        "exec-other",
    ]


async def test_the_same_worker_takes_its_lease_back_with_a_new_token(store: LeaseStore) -> None:
    old = await store.acquire_lease("exec-restart", "worker-a", 30)
    new = await store.acquire_lease("exec-restart", "worker-a", 30)  # a restarted process
    assert new.token > old.token
    assert await store.renew_lease(old, 30) is None  # the old incarnation is fenced off
    renewed = await store.renew_lease(new, 60)
    assert renewed is not None
    assert renewed.token == new.token
    assert renewed.expires_at > new.expires_at


async def test_a_released_or_expired_lease_goes_to_the_next_worker(store: LeaseStore) -> None:
    first = await store.acquire_lease("exec-free", "worker-a", 30)
    await store.release_lease(first)
    assert await store.leases() == []
    second = await store.acquire_lease("exec-free", "worker-b", 0.2)
    assert second.token > first.token  # a token is never given twice
    deadline = time.monotonic() + 10
    while True:  # the short lease runs out by itself
        try:
            third = await store.acquire_lease("exec-free", "worker-c", 30)
            break
        except LeaseHeldError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    assert third.token > second.token
    assert await store.renew_lease(second, 30) is None


async def test_a_fenced_write_lands_only_under_the_live_lease(store: LeaseStore) -> None:
    lease = await store.acquire_lease("exec-fenced", "worker-a", 30)
    kept = make_record("exec-fenced", "kept")
    await store.append([kept], fences={"exec-fenced": lease.token})
    assert_same(await store.read("kept"), kept)
    await store.acquire_lease("exec-fenced", "worker-a", 30)  # taken over: a new token
    stale = make_record("exec-fenced", "stale")
    for fences in ({"exec-fenced": lease.token}, {"exec-nobody-leases": 1}):
        try:
            await store.append([stale, make_record("exec-free-to-write")], fences=fences)
        except FencedError:
            pass
        else:
            raise AssertionError(f"a write fenced with {fences} landed")
    assert await store.read("stale") is None
    assert await store.list_versions("exec-free-to-write") == []  # nothing of the batch


async def _expired(store: LeaseStore, lease: Lease) -> None:
    """Wait (bounded) until another worker could take `lease`: it has run out."""
    deadline = time.monotonic() + 10
    while any(x.execution_id == lease.execution_id for x in await store.leases()):
        assert time.monotonic() < deadline, f"{lease} never expired"
        await asyncio.sleep(0.05)


async def test_an_expired_lease_no_one_took_is_still_its_holders(store: LeaseStore) -> None:
    lease = await store.acquire_lease("exec-outage", "worker-a", 0.2)
    await _expired(store, lease)  # a store outage kept worker-a from renewing
    written = make_record("exec-outage", "during-outage")
    await store.append([written], fences={"exec-outage": lease.token})  # queued meanwhile
    assert_same(await store.read("during-outage"), written)
    renewed = await store.renew_lease(lease, 30)
    assert renewed is not None, "an expired lease no one took was not given back"
    assert renewed.token == lease.token  # the same lease: writes queued under it still land
    assert renewed.expires_at > time.time() + 20
    try:
        await store.acquire_lease("exec-outage", "worker-b", 30)
    except LeaseHeldError:
        pass
    else:
        raise AssertionError("a renewed lease was taken by another worker")
    await store.release_lease(renewed)
    assert await store.renew_lease(renewed, 30) is None  # released: gone for good
    try:
        await store.append([make_record("exec-outage", "late")], fences={"exec-outage": 1})
    except FencedError:
        pass
    else:
        raise AssertionError("a write under a released lease landed")


async def test_a_lease_is_taken_over_from_a_holder_known_to_be_gone(store: LeaseStore) -> None:
    async def holder_after(worker: str, take_over: str) -> str:
        try:
            await store.acquire_lease("exec-dead", worker, 30, take_over=take_over)
        except LeaseHeldError as exc:
            return exc.holder
        raise AssertionError(f"{worker} took a live lease, taking over {take_over}")

    dead = await store.acquire_lease("exec-dead", "worker-dead", 30)
    assert await holder_after("worker-b", take_over="worker-other") == "worker-dead"
    taken = await store.acquire_lease("exec-dead", "worker-b", 30, take_over="worker-dead")
    assert (taken.worker_id, taken.token > dead.token) == ("worker-b", True)
    assert await store.renew_lease(dead, 30) is None
    # Two workers taking over the same dead one: the first wins, the second is refused.
    assert await holder_after("worker-c", take_over="worker-dead") == "worker-b"


LEASE_TESTS: list[LeaseCheck] = [
    test_a_lease_is_held_by_one_worker,
    test_the_same_worker_takes_its_lease_back_with_a_new_token,
    test_a_released_or_expired_lease_goes_to_the_next_worker,
    test_a_fenced_write_lands_only_under_the_live_lease,
    test_an_expired_lease_no_one_took_is_still_its_holders,
    test_a_lease_is_taken_over_from_a_holder_known_to_be_gone,
]

# -- usage ------------------------------------------------------------------------------

UsageCheck = Callable[[UsageStore], Awaitable[None]]


def _used(execution_id: str, node_id: str, day: int, model: str | None, cost: float) -> NodeRecord:
    node = ExecutionNode(
        execution_id=execution_id,
        type=NodeType.PROMPT,
        status=Status.SUCCESS,
        created_at=datetime(2026, 11, day, 12, 0, tzinfo=UTC),
        model=model,
        prompt_tokens=100 * day,
        completion_tokens=day,
        cost=cost,
    )
    node.id = node_id
    return NodeRecord.from_node(node)


async def test_usage_is_added_up_by_execution_model_and_day(store: UsageStore) -> None:
    await store.append(
        [
            _used("exec-a", "a1", 1, "model-x", 0.5),
            _used("exec-a", "a2", 2, "model-y", 0.25),
            make_record("exec-a", "no-usage"),  # counts nowhere
            _used("exec-b", "b1", 2, "model-x", 1.0),
            _used("exec-b", "b2", 3, None, 0.0),
        ]
    )
    assert await store.usage("execution") == [
        UsageRow("exec-a", 2, 300, 3, 0.75),
        UsageRow("exec-b", 2, 500, 5, 1.0),
    ]
    assert await store.usage("model") == [
        UsageRow("", 1, 300, 3, 0.0),
        UsageRow("model-x", 2, 300, 3, 1.5),
        UsageRow("model-y", 1, 200, 2, 0.25),
    ]
    assert [row.key for row in await store.usage("day")] == [
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
    ]
    assert await store.usage("total") == [UsageRow("total", 4, 800, 8, 1.75)]
    # Filters: some executions; a time range of whole days.
    assert await store.usage("model", execution_ids=["exec-b"]) == [
        UsageRow("", 1, 300, 3, 0.0),
        UsageRow("model-x", 1, 200, 2, 1.0),
    ]
    since, until = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)
    assert await store.usage("total", since=since, until=until) == [
        UsageRow("total", 2, 400, 4, 1.25)
    ]
    assert await store.usage("execution", since=since, until=until) == [
        UsageRow("exec-a", 1, 200, 2, 0.25),
        UsageRow("exec-b", 1, 200, 2, 1.0),
    ]
    assert await store.usage("day", execution_ids=["nobody"]) == []


USAGE_TESTS: list[UsageCheck] = [test_usage_is_added_up_by_execution_model_and_day]

# -- retention --------------------------------------------------------------------------

RetentionCheck = Callable[[RetentionStore], Awaitable[None]]


def _version_ids(records: list[NodeRecord]) -> list[str]:
    return [record.version_id for record in records]


async def test_deleting_an_execution_removes_every_trace_of_it(store: RetentionStore) -> None:
    # "shared" is a node id both executions use: only the deleted one's versions may go.
    shared_gone = make_record("exec-gone", "shared", output="gone 1", checkpoint=b"\x00g1")
    shared_kept = make_record("exec-kept", "shared", output="kept", checkpoint=b"\x00k")
    shared_gone_again = make_record("exec-gone", "shared", output="gone 2")
    gone = [
        shared_gone,
        make_record("exec-gone", "own", output=1, checkpoint=b"\x00g2"),
        shared_gone_again,
        make_record("exec-gone", "own", output=2),
        _used("exec-gone", "gone-x", 1, "model-x", 0.5),  # the same day and model as kept's
        _used("exec-gone", "gone-y", 2, "model-y", 0.125),  # a day and a model of its own
    ]
    kept = [
        make_record("exec-kept", "first", output=0),
        shared_kept,
        _used("exec-kept", "kept-x", 1, "model-x", 0.25),
    ]
    await store.append([gone[0], kept[0]])
    await store.append([kept[1], gone[1], gone[2]])  # "shared": gone, kept, gone again
    await store.append([*gone[3:], kept[2]])
    if isinstance(store, LeaseStore):  # a store that keeps leases or usage drops those too
        await store.acquire_lease("exec-gone", "worker-a", 30)
        await store.acquire_lease("exec-kept", "worker-b", 30)
    if isinstance(store, UsageStore):
        assert (await store.usage("total"))[0].calls == 3

    assert await store.delete_executions(["exec-gone", "no-such-execution"]) == len(gone)

    assert await store.list_executions() == ["exec-kept"]
    assert await store.list_versions("exec-gone") == []
    assert await store.list_nodes("exec-gone") == []
    assert await store.latest_checkpoint("exec-gone") is None
    assert await store.read("own") is None
    assert await store.history("own") == []
    assert await store.read("gone-x") is None
    assert_same(await store.read("shared"), shared_kept)  # the latest was the deleted one's
    history = await store.history("shared")
    assert _version_ids(history) == [shared_kept.version_id]
    versions = await store.list_versions("exec-kept")
    assert _version_ids(versions) == _version_ids(kept)
    for got, want in zip(versions, kept, strict=True):
        assert_same(got, want)
    assert _ids(await store.list_nodes("exec-kept")) == ["first", "shared", "kept-x"]
    assert_same(await store.latest_checkpoint("exec-kept"), shared_kept)
    if isinstance(store, UsageStore):
        kept_usage = UsageRow("exec-kept", 1, 100, 1, 0.25)
        assert await store.usage("execution") == [kept_usage]
        assert await store.usage("execution", execution_ids=["exec-gone"]) == []
        assert await store.usage("model") == [dataclasses.replace(kept_usage, key="model-x")]
        assert await store.usage("day") == [dataclasses.replace(kept_usage, key="2026-11-01")]
        assert await store.usage("total") == [dataclasses.replace(kept_usage, key="total")]
    if isinstance(store, LeaseStore):
        assert [lease.execution_id for lease in await store.leases()] == ["exec-kept"]

    assert await store.delete_executions(["exec-gone"]) == 0  # nothing left to delete
    assert await store.delete_executions([]) == 0
    # The id is free again: a new execution under it starts from nothing.
    again = make_record("exec-gone", "own", output="again")
    await store.append([again])
    assert await store.list_executions() == ["exec-kept", "exec-gone"]
    assert _version_ids(await store.list_versions("exec-gone")) == [again.version_id]
    assert _version_ids(await store.history("own")) == [again.version_id]
    assert await store.latest_checkpoint("exec-gone") is None


async def test_many_executions_are_deleted_in_one_call(store: RetentionStore) -> None:
    names = [f"exec-many-{i:03d}" for i in range(130)]
    await store.append([make_record(name, f"{name}/{step}") for name in names for step in (1, 2)])
    assert await store.delete_executions(names[:120]) == 240
    assert await store.list_executions() == names[120:]
    assert await store.read(f"{names[0]}/1") is None
    assert len(await store.list_versions(names[-1])) == 2


async def test_dropping_checkpoints_keeps_the_newest_byte_exact(store: RetentionStore) -> None:
    blobs = [b"\x00" + os.urandom(size) for size in (10, 300_000, 20, 70_000)]
    records = [
        make_record("exec-drop", "a", output=0, checkpoint=blobs[0]),
        make_record("exec-drop", "a", output=1),
        make_record("exec-drop", "b", output=2, checkpoint=blobs[1]),
        make_record("exec-drop", "a", output=3, checkpoint=blobs[2]),  # a checkpointed again
        make_record("exec-drop", "c", output=4),
        make_record("exec-drop", "c", output=5, checkpoint=blobs[3]),
        make_record("exec-drop", "d", output=6),  # the newest version has none
    ]
    other = make_record("exec-untouched", "x", checkpoint=b"\x00untouched")
    await store.append(records[:3])
    await store.append([other, *records[3:]])
    checkpointed = [r for r in records if r.checkpoint is not None]

    async def expect(dropped: int) -> None:
        """The versions all there, in order; the oldest `dropped` without their blob."""
        gone = {r.version_id for r in checkpointed[:dropped]}
        want = [
            dataclasses.replace(r, checkpoint=None) if r.version_id in gone else r for r in records
        ]
        got = await store.list_versions("exec-drop")
        assert _version_ids(got) == _version_ids(records)
        for version, expected in zip(got, want, strict=True):
            assert_same(version, expected)
        latest = await store.latest_checkpoint("exec-drop")
        if dropped == len(checkpointed):
            assert latest is None
        else:
            assert_same(latest, checkpointed[-1])
        assert_same(await store.latest_checkpoint("exec-untouched"), other)

    assert await store.drop_checkpoints("exec-drop", 2) == 2
    await expect(2)
    history = await store.history("a")  # the node's view agrees
    assert [v.checkpoint for v in history] == [None, None, blobs[2]]
    assert await store.drop_checkpoints("exec-drop", 2) == 0  # already done
    assert await store.drop_checkpoints("exec-drop", 10) == 0  # more than there are
    await expect(2)
    assert await store.drop_checkpoints("exec-drop", 1) == 1
    await expect(3)
    assert await store.drop_checkpoints("exec-drop", 0) == 1
    await expect(4)
    assert await store.drop_checkpoints("exec-drop", 0) == 0
    assert await store.drop_checkpoints("no-such-execution", 0) == 0
    # A later checkpoint is the latest again.
    later = make_record("exec-drop", "e", checkpoint=b"\x00later")
    await store.append([later])
    assert_same(await store.latest_checkpoint("exec-drop"), later)


async def test_deleting_nodes_removes_every_version_of_them_and_nothing_else(
    store: RetentionStore,
) -> None:
    # "shared" is a node id both executions use: only exec-prune's versions of it may go.
    # Node "c" carries usage (a day and a model of its own, and a share of d's group) and
    # the execution's latest checkpoint.
    a1 = make_record("exec-prune", "a", output=1, checkpoint=b"\x00a1")
    b1 = make_record("exec-prune", "b", output=2)
    c1 = _used("exec-prune", "c", 3, "model-z", 0.5)
    other_shared = make_record("exec-other", "shared", output="other", checkpoint=b"\x00o")
    other_used = _used("exec-other", "o", 1, "model-x", 1.0)
    shared = make_record("exec-prune", "shared", output="prune", checkpoint=b"\x00s")
    d1 = _used("exec-prune", "d", 2, "model-y", 0.25)
    a2 = make_record("exec-prune", "a", output=3)
    c2 = _used("exec-prune", "c", 2, "model-y", 0.125)
    b2 = make_record("exec-prune", "b", output=4, checkpoint=b"\x00b2")
    c3 = make_record("exec-prune", "c", output=5, checkpoint=b"\x00c3")
    await store.append([a1, b1, c1, other_shared, other_used])
    await store.append([shared, d1, a2, c2])
    await store.append([b2, c3])
    if isinstance(store, LeaseStore):
        await store.acquire_lease("exec-prune", "worker-a", 30)
    assert_same(await store.read("shared"), shared)
    assert_same(await store.latest_checkpoint("exec-prune"), c3)

    # Unknown ids, and ids named twice, are ignored; "shared" goes from exec-prune only.
    assert await store.delete_nodes("exec-prune", ["c", "shared", "no-such-node", "c"]) == 4

    kept = [a1, b1, d1, a2, b2]
    versions = await store.list_versions("exec-prune")
    assert _version_ids(versions) == _version_ids(kept)
    for got, want in zip(versions, kept, strict=True):
        assert_same(got, want)
    nodes = await store.list_nodes("exec-prune")
    assert _ids(nodes) == ["a", "b", "d"]
    for got, want in zip(nodes, [a2, b2, d1], strict=True):
        assert_same(got, want)
    assert await store.read("c") is None
    assert await store.history("c") == []
    assert_same(await store.read("shared"), other_shared)  # the latest was the deleted one
    assert _version_ids(await store.history("shared")) == [other_shared.version_id]
    assert _version_ids(await store.history("a")) == [a1.version_id, a2.version_id]
    assert_same(await store.latest_checkpoint("exec-prune"), b2)  # c3 went: the next newest
    assert_same(await store.latest_checkpoint("exec-other"), other_shared)
    assert _version_ids(await store.list_versions("exec-other")) == _version_ids(
        [other_shared, other_used]
    )
    assert await store.list_executions() == ["exec-prune", "exec-other"]
    prune = UsageRow("exec-prune", 1, 200, 2, 0.25)  # d1 alone
    other = UsageRow("exec-other", 1, 100, 1, 1.0)
    if isinstance(store, UsageStore):
        assert await store.usage("execution") == [other, prune]
        assert await store.usage("execution", execution_ids=["exec-prune"]) == [prune]
        assert await store.usage("model") == [  # model-z, c1's alone, is gone
            dataclasses.replace(other, key="model-x"),
            dataclasses.replace(prune, key="model-y"),  # c2 taken off, d1 left
        ]
        assert await store.usage("day") == [  # 2026-11-03, c1's alone, is gone
            dataclasses.replace(other, key="2026-11-01"),
            dataclasses.replace(prune, key="2026-11-02"),
        ]
        assert await store.usage("total") == [UsageRow("total", 2, 300, 3, 1.25)]

    # Nothing named is left: nothing goes, wherever the ids are from.
    assert await store.delete_nodes("exec-prune", ["c", "shared"]) == 0
    assert await store.delete_nodes("exec-prune", []) == 0
    assert await store.delete_nodes("exec-other", ["a", "b"]) == 0  # exec-prune's nodes
    assert await store.delete_nodes("no-such-execution", ["a", "shared"]) == 0
    assert len(await store.list_versions("exec-prune")) == len(kept)
    assert len(await store.list_versions("exec-other")) == 2

    # A deleted node saved again starts from nothing, seen last.
    c4 = make_record("exec-prune", "c", output="again", checkpoint=b"\x00c4")
    await store.append([c4])
    assert _version_ids(await store.history("c")) == [c4.version_id]
    assert _ids(await store.list_nodes("exec-prune")) == ["a", "b", "d", "c"]
    assert_same(await store.latest_checkpoint("exec-prune"), c4)

    assert await store.delete_nodes("exec-prune", ["b", "c"]) == 3
    assert_same(await store.latest_checkpoint("exec-prune"), a1)
    assert _ids(await store.list_nodes("exec-prune")) == ["a", "d"]

    # The last nodes: the execution leaves the list, its usage with it; its lease stays
    # (the run may still hold it). Saved again, it is listed again, last.
    assert await store.delete_nodes("exec-prune", ["d", "a"]) == 3
    assert await store.list_executions() == ["exec-other"]
    assert await store.list_versions("exec-prune") == []
    assert await store.list_nodes("exec-prune") == []
    assert await store.latest_checkpoint("exec-prune") is None
    assert await store.read("a") is None
    if isinstance(store, UsageStore):
        assert await store.usage("execution") == [other]
        assert await store.usage("execution", execution_ids=["exec-prune"]) == []
        assert await store.usage("total") == [dataclasses.replace(other, key="total")]
    if isinstance(store, LeaseStore):
        assert [lease.execution_id for lease in await store.leases()] == ["exec-prune"]
    again = make_record("exec-prune", "a", output="again")
    await store.append([again])
    assert await store.list_executions() == ["exec-other", "exec-prune"]
    assert _version_ids(await store.list_versions("exec-prune")) == [again.version_id]
    assert await store.latest_checkpoint("exec-prune") is None
    assert_same(await store.latest_checkpoint("exec-other"), other_shared)


async def test_many_nodes_are_deleted_in_one_call(store: RetentionStore) -> None:
    names = [f"node-{i:03d}" for i in range(130)]
    await store.append([make_record("exec-many-nodes", name, output=1) for name in names])
    await store.append(
        [make_record("exec-many-nodes", name, output=2, checkpoint=b"\x00") for name in names]
    )
    assert await store.delete_nodes("exec-many-nodes", names[:120]) == 240
    assert _ids(await store.list_nodes("exec-many-nodes")) == names[120:]
    assert len(await store.list_versions("exec-many-nodes")) == 20
    latest = await store.latest_checkpoint("exec-many-nodes")
    assert latest is not None
    assert latest.node_id == names[-1]


async def test_deleting_nodes_refuses_arguments_it_would_misread(store: RetentionStore) -> None:
    """A lone string would name one node per character; ids are non-empty strings."""
    await store.append([make_record("exec-args", name) for name in ("n", "a", "b")])
    wrong: list[tuple[Any, Any]] = [
        ("exec-args", "n"),
        ("exec-args", "ab"),
        ("exec-args", ["a", 1]),
        ("exec-args", ["a", ""]),
        ("exec-args", None),
        ("", ["a"]),
        (None, ["a"]),
    ]
    for execution_id, node_ids in wrong:
        try:
            await store.delete_nodes(execution_id, node_ids)
        except (ValueError, TypeError):
            pass
        else:
            raise AssertionError(f"delete_nodes({execution_id!r}, {node_ids!r}) was accepted")
    assert _ids(await store.list_nodes("exec-args")) == ["n", "a", "b"]


RETENTION_TESTS: list[RetentionCheck] = [
    test_deleting_an_execution_removes_every_trace_of_it,
    test_many_executions_are_deleted_in_one_call,
    test_dropping_checkpoints_keeps_the_newest_byte_exact,
    test_deleting_nodes_removes_every_version_of_them_and_nothing_else,
    test_many_nodes_are_deleted_in_one_call,
    test_deleting_nodes_refuses_arguments_it_would_misread,
]

CONFORMANCE_TESTS: list[Check] = [
    test_read_returns_appended_record,
    test_read_of_unknown_node_is_none,
    test_new_version_never_changes_an_old_one,
    test_list_nodes_gives_latest_versions_in_first_seen_order,
    test_list_versions_gives_every_version_in_append_order,
    test_latest_checkpoint_is_the_last_version_with_a_blob,
    test_list_executions_in_first_seen_order,
    test_batch_keeps_its_order,
    test_a_batch_sent_twice_is_stored_once,
    test_blobs_round_trip_byte_exact,
    test_empty_append_is_a_no_op,
    test_concurrent_appends_all_land_in_order,
    test_use_after_close_raises_closed_error,
]

__all__ = [
    "CONFORMANCE_TESTS",
    "LEASE_TESTS",
    "RETENTION_TESTS",
    "USAGE_TESTS",
    "Check",
    "LeaseCheck",
    "RetentionCheck",
    "UsageCheck",
    "assert_same",
    "make_record",
]
