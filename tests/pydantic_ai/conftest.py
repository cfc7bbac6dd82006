"""Pydantic AI's tests: a fresh store of each kind the tests run on, as a URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store_urls import fresh_store_url


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_store_url(str(request.param), tmp_path, "livingai_pydantic_ai") as url:
        yield url
