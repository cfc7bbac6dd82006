"""The process the adapter scenario suite kills mid-charge (livingai.testing.adapters):

    python -m livingai.testing.adapter_child MODULE:CLASS STORE_URL EXECUTION_ID FOLDER

It makes the scenario (`MODULE.CLASS()`) and runs the trip kept in FOLDER as execution
EXECUTION_ID, recorded in the store at STORE_URL, with a charge that hangs once it
charged the card: the suite SIGKILLs it there. Reaching the end is a failure.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any

from livingai.testing.adapters import AdapterScenario, Trip, runtime


def scenario_of(target: str) -> AdapterScenario:
    module, _, name = target.partition(":")
    found: Any = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    made: AdapterScenario = found()
    return made


async def main(target: str, url: str, execution_id: str, folder: str) -> None:
    scenario = scenario_of(target)
    async with runtime(url) as live:
        await scenario.run(live, Trip(Path(folder), hang=True), execution_id)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    asyncio.run(main(*sys.argv[1:5]))
    sys.exit("the run ended: the charge should have hung until it was killed")
