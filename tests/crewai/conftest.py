"""CrewAI's tests: CrewAI offline and kept out of the home directory, set before it is
imported (it writes a key under ~/.local/share and a settings dir under ~/.config at
import, whatever else is set, and would send telemetry, trace and ask PyPI for its
version). Child processes inherit the same environment."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from livingai.testing.crewai_offline import crewai_offline
from tests.store_urls import fresh_store_url

_HOME = tempfile.mkdtemp(prefix="livingai-crewai-home-")
crewai_offline(_HOME)

# Imported once here, its import-time warnings (about its own packages) silenced: the
# suite turns warnings into errors, and these are not ours to fix.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import crewai  # noqa: F401


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store of each kind the CrewAI tests run on, as a URL."""
    with fresh_store_url(str(request.param), tmp_path, "livingai_crewai") as url:
        yield url


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The temporary home goes with the session (its child processes have ended)."""
    shutil.rmtree(_HOME, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """CrewAI reads its own deprecated fields (an Agent made reads several): warnings
    raised in its modules are not ours to fix."""
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning:crewai"))
