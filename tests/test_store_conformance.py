"""Every store passes the same conformance suite (livingai.testing)."""

from __future__ import annotations

import pytest

from livingai import CheckpointStore, LeaseStore
from livingai.testing import CONFORMANCE_TESTS, LEASE_TESTS, Check, LeaseCheck


@pytest.mark.parametrize("check", CONFORMANCE_TESTS, ids=lambda check: check.__name__)
async def test_store_conforms(check: Check, store: CheckpointStore) -> None:
    await check(store)


@pytest.mark.parametrize("check", LEASE_TESTS, ids=lambda check: check.__name__)
async def test_store_keeps_leases(check: LeaseCheck, store: CheckpointStore) -> None:
    assert isinstance(store, LeaseStore)  # every store of ours keeps leases
    await check(store)
