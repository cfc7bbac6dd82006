"""Every store passes the same conformance suite (livingai.testing)."""

from __future__ import annotations

import pytest

from livingai import CheckpointStore, LeaseStore, UsageStore
from livingai.testing import (
    CONFORMANCE_TESTS,
    LEASE_TESTS,
    USAGE_TESTS,
    Check,
    LeaseCheck,
    UsageCheck,
)


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
