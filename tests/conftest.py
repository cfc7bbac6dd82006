"""Fixtures shared by the suite: fresh, empty stores of every kind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from livingai import CheckpointStore, MemoryStore, SQLiteStore

StoreFactory = Callable[[], CheckpointStore]

STORE_KINDS = ["memory", "sqlite"]
PERSISTENT_KINDS = ["sqlite"]  # a second store object sees what the first one stored


def make_factory(kind: str, tmp_path: Path) -> StoreFactory:
    """Stores of one kind over the same data (file, server, key prefix)."""
    if kind == "memory":
        return MemoryStore
    return lambda: SQLiteStore(tmp_path / "store.db")


@pytest.fixture(params=STORE_KINDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return make_factory(request.param, tmp_path)


@pytest.fixture(params=PERSISTENT_KINDS)
def persistent_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return make_factory(request.param, tmp_path)


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[CheckpointStore]:
    opened = store_factory()
    yield opened
    await opened.close()
