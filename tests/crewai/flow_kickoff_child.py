"""A CrewAI flow kicked off through CrewAIAdapter, for tests/crewai/test_flow_kickoff.py:

    python -m tests.crewai.flow_kickoff_child STORE_URL FOLDER [--hang]

Execution `trip-1` runs flow plan -> route (a router) -> book -> confirm with the input
{"city": "Zurich"}. `plan` returns a pydantic model; `book` kicks off a one-task crew
whose scripted LLM asks for the wrapped `charge` tool (retry_with_key) once; with --hang,
`charge` prints `charged trip` after charging the fake provider in FOLDER, and waits to be
killed there. Each method's call is appended to FOLDER/methods.log (so it counts across
processes). Without --hang the flow ends and prints its result and state as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from crewai import Agent, Crew, Task
from crewai.crews.crew_output import CrewOutput
from crewai.flow.flow import Flow, FlowState, listen, router, start
from crewai.tools import tool
from pydantic import BaseModel, Field

from livingai import CheckpointEngine, Runtime, open_store
from livingai.adapters.crewai import CrewAIAdapter
from tests.crash_runs_child import set_up_provider
from tests.crewai.fakes import ScriptedLLM, tool_call, tool_outputs
from tests.payments import charge_at

URL, FOLDER = sys.argv[1], Path(sys.argv[2])
HANG = "--hang" in sys.argv
PROVIDER = str(FOLDER / "provider.db")


class Trip(FlowState):
    city: str = ""
    trail: list[str] = Field(default_factory=list)
    receipt: str = ""


class Plan(BaseModel):
    city: str
    nights: int


def called(method: str) -> None:
    with (FOLDER / "methods.log").open("a") as log:
        log.write(method + "\n")


@tool("charge")
def charge(order: str, amount: int) -> str:
    """Charge an order."""
    receipt = charge_at(PROVIDER, order, amount)
    if HANG:
        sys.stdout.write(f"charged {order}\n")  # one write: CrewAI prints too; killed here
        sys.stdout.flush()
        time.sleep(120)
    return receipt


def answer(messages: list[dict[str, Any]], task: Any) -> Any:
    outputs = tool_outputs(messages)
    if not outputs:
        return [tool_call("charge", {"order": "trip", "amount": 300}, "call-charge")]
    return outputs["call-charge"]


def build(adapter: CrewAIAdapter) -> Flow[Trip]:
    booker = Agent(
        role="booker",
        goal="Book the trip",
        backstory="You book trips.",
        llm=ScriptedLLM(answer, FOLDER / "llm.log"),
        tools=[adapter.tool(charge, retry_with_key=True)],
    )

    class TripFlow(Flow[Trip]):
        @start()
        def plan(self) -> Plan:
            called("plan")
            self.state.trail.append("plan")
            return Plan(city=self.state.city, nights=2)

        @router(plan)
        def route(self, plan: Plan) -> str:
            called("route")
            assert isinstance(plan, Plan), plan  # served as its class on resume
            self.state.trail.append("route")
            return "booking" if plan.nights else "skip"

        @listen("booking")
        def book(self) -> str:
            called("book")
            task = Task(description="Book the trip", expected_output="a receipt", agent=booker)
            output = Crew(agents=[booker], tasks=[task]).kickoff()
            assert isinstance(output, CrewOutput)
            receipt = output.raw
            self.state.receipt = receipt
            self.state.trail.append("book")
            return receipt

        @listen(book)
        def confirm(self, receipt: str) -> str:
            called("confirm")
            self.state.trail.append("confirm")
            return f"confirmed {self.state.city}: {receipt}"

    return TripFlow()


if __name__ == "__main__":
    set_up_provider(PROVIDER)
    adapter = CrewAIAdapter(Runtime(CheckpointEngine(open_store(URL))))
    flow = build(adapter)
    result = adapter.kickoff(flow, {"city": "Zurich"}, execution_id="trip-1")
    print(json.dumps({"result": result, "state": flow.state.model_dump(mode="json")}))
    adapter.close()
