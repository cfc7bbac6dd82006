"""CrewAI kept offline and out of the home directory, for tests, benchmarks and examples
that run crews with a scripted LLM. CrewAI reads these settings when it is imported (it
writes a key under ~/.local/share and a settings folder under ~/.config at import,
whatever else is set, and would send telemetry, traces and ask PyPI for its version), so
call `crewai_offline()` before the first `import crewai`. This module imports nothing of
CrewAI's."""

from __future__ import annotations

import os

OFFLINE = {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_DISABLE_VERSION_CHECK": "true",
    "CREWAI_TESTING": "true",  # no first-run prompt
}


def crewai_offline(home: str | None = None) -> None:
    """Set CrewAI's offline settings in this process's environment (its child processes
    inherit them); with `home`, HOME and CrewAI's storage folder there as well, the only
    way to keep its import-time files out of the user's home."""
    os.environ.update(OFFLINE)
    if home is not None:
        os.environ.update(HOME=home, CREWAI_STORAGE_DIR=os.path.join(home, "storage"))
