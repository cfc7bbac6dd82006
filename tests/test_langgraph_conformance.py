"""LangGraph's own conformance suite (langgraph-checkpoint-conformance, pinned in the
test extra) against LivingAISaver on SQLite, Redis and PostgreSQL: every capability,
base and extended, detected and passed, no test skipped."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate

from livingai.adapters.langgraph import LivingAISaver
from tests.langgraph_support import SAVER_KINDS, backend

TESTS_IN_0_0_2 = 81  # every test of the pinned release, base and extended


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", SAVER_KINDS)
async def test_the_conformance_suite_passes_in_full(kind: str, tmp_path: Path) -> None:
    with contextlib.contextmanager(backend)(kind, tmp_path) as place:

        @checkpointer_test(name=f"LivingAISaver on {kind}")
        async def saver() -> AsyncIterator[LivingAISaver]:
            opened = LivingAISaver(place.store())
            try:
                yield opened
            finally:
                await opened.aclose()

        report = await validate(saver)
    results = report.to_dict()["results"]
    failures = {
        name: r["failures"] for name, r in results.items() if r["failures"] or not r["passed"]
    }
    assert failures == {}, f"{report.conformance_level()}: {failures}"
    assert all(r["detected"] for r in results.values()), results
    assert sum(r["tests_skipped"] for r in results.values()) == 0
    assert sum(r["tests_passed"] for r in results.values()) == TESTS_IN_0_0_2
    assert report.conformance_level() == "FULL"
