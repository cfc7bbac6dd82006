"""Every store passes the same conformance suite (livingai.testing)."""

from __future__ import annotations

import pytest

from livingai import (
    CheckpointStore,
    ConfigError,
    IndexStore,
    LeaseStore,
    RetentionStore,
    UsageStore,
)
from livingai.testing import (
    CONFORMANCE_TESTS,
    LEASE_TESTS,
    RETENTION_TESTS,
    USAGE_TESTS,
    Check,
    LeaseCheck,
    RetentionCheck,
    UsageCheck,
    make_record,
)
from livingai.testing.index_checks import INDEX_TESTS, IndexCheck


@pytest.mark.parametrize("check", CONFORMANCE_TESTS, ids=lambda check: check.__name__)
async def test_store_conforms(check: Check, store: CheckpointStore) -> None:
    await check(store)


@pytest.mark.parametrize("check", LEASE_TESTS, ids=lambda check: check.__name__)
async def test_store_keeps_leases(check: LeaseCheck, store: CheckpointStore) -> None:
    assert isinstance(store, LeaseStore)  # every store of ours keeps leases
    await check(store)


@pytest.mark.parametrize("check", USAGE_TESTS, ids=lambda check: check.__name__)
async def test_store_adds_usage_up(check: UsageCheck, store: CheckpointStore) -> None:
    assert isinstance(store, UsageStore)  # every store of ours adds usage up itself
    await check(store)


@pytest.mark.parametrize("check", RETENTION_TESTS, ids=lambda check: check.__name__)
async def test_store_deletes_for_retention(check: RetentionCheck, store: CheckpointStore) -> None:
    assert isinstance(store, RetentionStore)  # every store of ours can delete
    await check(store)


async def test_retention_refuses_arguments_it_would_misread(store: CheckpointStore) -> None:
    assert isinstance(store, RetentionStore)
    await store.append([make_record("e", checkpoint=b"\x00e")])
    with pytest.raises(ConfigError, match="not one string"):
        await store.delete_executions("e")  # a str is a Sequence[str]: one id a character
    for keep in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="keep must be a whole number >= 0"):
            await store.drop_checkpoints("e", keep)  # type: ignore[arg-type]
    assert await store.list_executions() == ["e"]
    assert await store.latest_checkpoint("e") is not None


@pytest.mark.parametrize("check", INDEX_TESTS, ids=lambda check: check.__name__)
async def test_store_indexes_its_executions(check: IndexCheck, store: CheckpointStore) -> None:
    assert isinstance(store, IndexStore)  # every store of ours keeps the index
    await check(store)
