"""Every store passes the same conformance suite (livingai.testing)."""

from __future__ import annotations

import pytest

from livingai import CheckpointStore
from livingai.testing import CONFORMANCE_TESTS, Check


@pytest.mark.parametrize("check", CONFORMANCE_TESTS, ids=lambda check: check.__name__)
async def test_store_conforms(check: Check, store: CheckpointStore) -> None:
    await check(store)
