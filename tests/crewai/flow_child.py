"""A CrewAI flow persisted with LivingAIFlowPersistence, for tests/crewai/test_flows.py:

    python -m tests.crewai.flow_child STORE_URL [FLOW_ID] [--hang]

Three methods, a -> b -> c, each adding to the state; with --hang, c prints `in c <flow
id>` and waits to be killed there; without, the flow ends and its state is printed as
JSON. With FLOW_ID (not "-"), the flow is kicked off with that id: its state is restored.
"""

from __future__ import annotations

import json
import os
import sys
import time

from crewai.flow.flow import Flow, FlowState, listen, start
from crewai.flow.persistence import persist
from pydantic import Field

from livingai.adapters.crewai import LivingAIFlowPersistence

URL = sys.argv[1]
HANG = "--hang" in sys.argv
PERSISTENCE = LivingAIFlowPersistence(URL)


class Counted(FlowState):
    started_by: int = 0  # the process that ran `a` first
    n: int = 0
    trail: list[str] = Field(default_factory=list)


@persist(PERSISTENCE)
class ThreeSteps(Flow[Counted]):
    @start()
    def a(self) -> str:
        self.state.started_by = self.state.started_by or os.getpid()
        self.state.n += 1
        self.state.trail.append("a")
        return "A"

    @listen(a)
    def b(self, before: str) -> str:
        self.state.n += 10
        self.state.trail.append("b")
        return before + "B"

    @listen(b)
    def c(self, before: str) -> str:
        if HANG:
            sys.stdout.write(f"in c {self.state.id}\n")  # one write: CrewAI prints too
            sys.stdout.flush()
            time.sleep(120)  # killed here
        self.state.trail.append("c")
        return before + "C"


if __name__ == "__main__":
    given = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else "-"
    flow = ThreeSteps()
    result = flow.kickoff(inputs=None if given == "-" else {"id": given})
    print(json.dumps({"result": result, "state": flow.state.model_dump(mode="json")}))
    PERSISTENCE.close()
