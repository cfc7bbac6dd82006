"""The adapter scenario suite: one travel booking that every framework adapter runs, as
the store conformance suite is for stores. It is killed mid-tool and resumed, replayed
with its tools served from the recording, costed and shown, and each check asserts what
a broken adapter would get wrong (a second charge, a recorded turn paid again, a real
tool called in a replay, a turn without its tokens or cost).

The scenario, framework-neutral (`Trip`): asked "Fly me to Zurich", a scripted model
(`Trip.turn`) calls `search_flights` (read-only), then `book_flight` for the cheapest
flight, then `charge_card` for it (both side effects, deduplicated on
`current_step().idempotency_key` by a ledger file, as a payment provider does on its
key), then answers `ANSWER`. The model counts its calls in a file and every tool logs
its real calls in the ledger, so the counts hold across processes.

How a new adapter runs the suite. Write a scenario class for your framework (see
`AdapterScenario`) at the top level of an importable module (the crash check starts a
child process that imports it by name and makes one with no arguments):

- a model for the framework that answers with `trip.turn(outputs)`, `outputs` being the
  tool outputs the conversation holds so far by call id, turned into the framework's
  tool call (with `ToolCall.call_id` as its id) or final message, and that reports
  `MODEL`, `PROMPT_TOKENS` and `COMPLETION_TOKENS` as the framework's usage (it decides
  from the conversation alone, so a resumed run asks what the killed one asked);
- the agent or graph with `trip.tools()` made tools of the framework, every one wrapped
  by the adapter (a replay serves them all), `book_flight` and `charge_card` with
  `retry_with_key=True`;
- `run(runtime, trip, execution_id, replay_of=None)`: the adapter over `runtime` (it has
  the suite's price table), the run started, resumed where it stopped, or answered from
  the log when finished, with `replay_of` as the adapter's MOCK_TOOLS replay of that
  execution; it returns the final answer's text.

Then run each check against it:

    import pytest
    from livingai.testing.adapters import SCENARIO_TESTS, ScenarioCheck

    @pytest.mark.parametrize("check", SCENARIO_TESTS, ids=lambda check: check.__name__)
    async def test_my_adapter(check: ScenarioCheck, tmp_path: Path) -> None:
        await check(MyFrameworkTrip(), tmp_path)

tests/test_langgraph_scenarios.py (LangGraph) and tests/openai_agents/test_scenarios.py
(the OpenAI Agents SDK) in livingai's repository are two such scenarios, 80-100 lines
each. The store is SQLite in `tmp_path`, or the fresh, empty store `check(..., url=URL)`
names (the crash check's child process opens it too). A check that needs something
missing (the `cli` extra) raises `unittest.SkipTest`, which pytest reports as a skip.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import unittest
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from livingai import (
    CheckpointEngine,
    ExecutionNode,
    NodeType,
    NotInStepError,
    Price,
    PriceTable,
    ReplayDivergedError,
    Runtime,
    Status,
    current_step,
    open_store,
)

REQUEST = "Fly me to Zurich"
FLIGHTS = [{"flight": "LX-318", "price": 420}, {"flight": "BA-731", "price": 180}]
SEARCH, BOOK, CHARGE = "search_flights", "book_flight", "charge_card"
TOOLS = (SEARCH, BOOK, CHARGE)
ANSWER = "Booked BA-731 (BK-BA-731) and charged $180 (CH-1)"
MODEL = "livingai-scenario-model"
PROMPT_TOKENS, COMPLETION_TOKENS = 120, 30
TURNS = 4  # search, book, charge, answer
PRICES = PriceTable({MODEL: Price(2.0, 8.0)}, defaults=False)
WORKER = "livingai-scenario"  # every process's worker id: a killed one's lease is taken back
CHARGING = "livingai-scenario: charging"  # the child's line once the card is charged
HANG_SECONDS = 60.0  # how long a hanging charge waits to be killed
SECONDS = 60.0  # the bound on every wait of the suite


# -- the scenario -------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """A model turn that calls a tool."""

    name: str
    call_id: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """The model's final turn."""

    text: str


Turn = ToolCall | Answer


@dataclass(frozen=True)
class Trip:
    """One travel booking's script, tools and ledger, kept in `folder`.

    `hang`: charge_card, once it charged, prints CHARGING and waits to be killed (the
    crash check's child). `choose="first"` books the first flight listed instead of the
    cheapest: a model that drifted from the recording."""

    folder: Path
    hang: bool = False
    choose: str = "cheapest"

    @property
    def model_log(self) -> Path:
        return self.folder / "model.calls"

    @property
    def ledger_file(self) -> Path:
        return self.folder / "ledger.jsonl"

    def turn(self, outputs: Mapping[str, str]) -> Turn:
        """The model's next turn, from the tool outputs it was shown (by call id) alone,
        as a real model asked the same again would answer; the call is counted."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.model_log.open("a") as log:
            log.write(f"{len(outputs)}\n")
        if "call-search" not in outputs:
            return ToolCall(SEARCH, "call-search", {"to": "Zurich"})
        if "call-book" not in outputs:
            flights = json.loads(outputs["call-search"])
            chosen = flights[0] if self.choose == "first" else min(flights, key=_price)
            return ToolCall(
                BOOK, "call-book", {"flight": chosen["flight"], "price": _price(chosen)}
            )
        booked = json.loads(outputs["call-book"])
        if "call-charge" not in outputs:
            charge = {"booking": booked["booking"], "amount": booked["price"]}
            return ToolCall(CHARGE, "call-charge", charge)
        charged = json.loads(outputs["call-charge"])
        return Answer(
            f"Booked {booked['flight']} ({booked['booking']}) and charged "
            f"${charged['amount']} ({charged['receipt']})"
        )

    def tools(self) -> list[Callable[..., Awaitable[str]]]:
        """search_flights, book_flight and charge_card, as plain async functions with
        typed arguments and a docstring, for the framework to make tools of. Each
        returns JSON text."""

        async def search_flights(to: str) -> str:
            """Search flights to a city."""
            self._log({"event": "call", "tool": SEARCH, "key": _key()})
            return json.dumps(FLIGHTS)

        async def book_flight(flight: str, price: int) -> str:
            """Book a flight."""
            done = self._effect(BOOK, {"flight": flight, "price": price})
            return json.dumps({**done, "booking": f"BK-{flight}"})

        async def charge_card(booking: str, amount: int) -> str:
            """Charge the card for a booking."""
            charges = len(self.effects(CHARGE))
            done = self._effect(CHARGE, {"amount": amount, "receipt": f"CH-{charges + 1}"})
            if self.hang:
                print(CHARGING, flush=True)
                await asyncio.sleep(HANG_SECONDS)
                raise RuntimeError(f"the charge was not killed within {HANG_SECONDS}s")
            return json.dumps({"booking": booking, **done})

        return [search_flights, book_flight, charge_card]

    # -- the ledger -----------------------------------------------------------------------

    def _log(self, line: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.ledger_file.open("a") as ledger:
            ledger.write(json.dumps(line) + "\n")

    def _effect(self, tool: str, effect: dict[str, Any]) -> dict[str, Any]:
        """A side effect, once per idempotency key (every call without a key is a new
        one): what the first call with this key did."""
        key = _key()
        self._log({"event": "call", "tool": tool, "key": key})
        for done in self.effects(tool):
            if key is not None and done["key"] == key:
                return dict(done["effect"])
        self._log({"event": "effect", "tool": tool, "key": key, "effect": effect})
        return effect

    def lines(self) -> list[dict[str, Any]]:
        """Everything the tools did, in order."""
        if not self.ledger_file.exists():
            return []
        return [json.loads(line) for line in self.ledger_file.read_text().splitlines()]

    def calls(self, tool: str) -> list[dict[str, Any]]:
        """Every real call of `tool`, with its idempotency key."""
        return [line for line in self.lines() if line["event"] == "call" and line["tool"] == tool]

    def effects(self, tool: str) -> list[dict[str, Any]]:
        """The side effects `tool` had: one per key."""
        return [line for line in self.lines() if line["event"] == "effect" and line["tool"] == tool]

    def model_calls(self) -> int:
        return len(self.model_log.read_text().splitlines()) if self.model_log.exists() else 0


def _key() -> str | None:
    try:
        return current_step().idempotency_key
    except NotInStepError:  # a tool the adapter did not wrap: no key to deduplicate on
        return None


def _price(flight: Mapping[str, Any]) -> int:
    return int(flight["price"])


class AdapterScenario(Protocol):
    """The trip, run through one framework's adapter (see the module docstring)."""

    async def run(
        self, runtime: Runtime, trip: Trip, execution_id: str, *, replay_of: str | None = None
    ) -> str:
        """Run the trip as execution `execution_id` recorded into `runtime`: started,
        resumed where it stopped, or answered from the log when finished; with
        `replay_of`, a MOCK_TOOLS replay of that execution. Returns the final answer."""
        ...


class ScenarioCheck(Protocol):
    """A check of the suite: `await check(scenario, tmp_path)`, on SQLite in `tmp_path`
    unless `url` names a fresh, empty store."""

    __name__: str

    def __call__(
        self, scenario: AdapterScenario, tmp_path: Path, *, url: str | None = None
    ) -> Awaitable[None]: ...


# -- helpers ------------------------------------------------------------------------------


def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'scenario.db'}"


def runtime(url: str) -> Runtime:
    """A runtime over the store at `url`, as every process of the suite makes it."""
    return Runtime(CheckpointEngine(open_store(url)), worker_id=WORKER, prices=PRICES)


def child_env() -> dict[str, str]:
    """The environment of a child process: it imports what this process can."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def target_of(scenario: AdapterScenario) -> str:
    """`module:Class` of the scenario, for the child process to import."""
    kind = type(scenario)
    if kind.__module__ == "__main__" or "<locals>" in kind.__qualname__:
        raise AssertionError(
            f"{kind.__qualname__} must be defined at the top level of an importable module "
            "for the crash check's child process to make one"
        )
    return f"{kind.__module__}:{kind.__qualname__}"


async def kill_in_charge(
    scenario: AdapterScenario, url: str, execution_id: str, trip: Trip
) -> None:
    """Run the trip in a child process (livingai.testing.adapter_child) and SIGKILL it
    once it charged the card, inside charge_card."""
    command = [sys.executable, "-m", "livingai.testing.adapter_child", target_of(scenario)]
    command += [url, execution_id, str(trip.folder)]
    errors = trip.folder / "child.stderr"
    trip.folder.mkdir(parents=True, exist_ok=True)
    with errors.open("wb") as err:
        child = await asyncio.create_subprocess_exec(
            *command, stdout=subprocess.PIPE, stderr=err, env=child_env()
        )
        assert child.stdout is not None
        seen: list[bytes] = []
        try:
            async with asyncio.timeout(SECONDS):
                while CHARGING.encode() not in (line := await child.stdout.readline()):
                    if not line:
                        await child.wait()
                        raise AssertionError(
                            f"the child ended ({child.returncode}) before charging: "
                            f"{b''.join(seen).decode()[-1000:]}{errors.read_text()[-3000:]}"
                        )
                    seen.append(line)
        except TimeoutError:
            raise AssertionError(
                f"the child did not charge within {SECONDS}s: {errors.read_text()[-3000:]}"
            ) from None
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()


def _steps(nodes: list[ExecutionNode]) -> tuple[list[ExecutionNode], list[ExecutionNode]]:
    """The model turns (PROMPT nodes with a model) and the tool calls of an execution."""
    turns = [n for n in nodes if n.type is NodeType.PROMPT and n.model is not None]
    tools = [n for n in nodes if n.type is NodeType.TOOL]
    return turns, tools


def _named(tools: list[ExecutionNode]) -> list[str]:
    return sorted(str(node.metadata.get("step")) for node in tools)


def same(got: Any, want: Any, what: str) -> None:
    """`got == want`, or an AssertionError saying what differs (pytest does not rewrite
    the asserts of this module)."""
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, expected {want!r}")


def close_to(got: float | None, want: float, what: str) -> None:
    if got is None or abs(got - want) > 1e-9:
        raise AssertionError(f"{what}: got {got!r}, expected {want!r}")


# -- the checks ---------------------------------------------------------------------------


async def test_killed_mid_charge_resumes_and_charges_once(
    scenario: AdapterScenario,
    tmp_path: Path,
    *,
    url: str | None = None,  # noqa: PT028
) -> None:
    """SIGKILLed inside charge_card after the card was charged; a fresh process resumes
    it: the recorded turns are not asked again, the finished tools do not run again, the
    charge runs again with the same key (retry_with_key) and the provider deduplicates.
    Run once more, finished, it is answered from the log alone."""
    url, trip = url or store_url(tmp_path), Trip(tmp_path / "trip")
    await kill_in_charge(scenario, url, "trip-killed", trip)
    same(trip.model_calls(), TURNS - 1, "model calls before the kill (search, book, charge)")
    async with runtime(url) as resumed:
        answer = await scenario.run(resumed, trip, "trip-killed")
        nodes = await resumed.engine.list_nodes("trip-killed")
        usage = await resumed.engine.usage("model", execution_ids=["trip-killed"])
    same(trip.model_calls(), TURNS, "model calls after the resume (a recorded turn asked again?)")
    same(
        [len(trip.calls(tool)) for tool in TOOLS],
        [1, 1, 2],
        f"real calls of {', '.join(TOOLS)} (search and book were done before the kill; the "
        f"charge in doubt runs again once) in {trip.lines()}",
    )
    keys = [line["key"] for line in trip.calls(CHARGE)]
    if len(set(keys)) != 1 or keys[0] is None:
        raise AssertionError(f"the charge ran again under another idempotency key: {keys}")
    same(len(trip.effects(CHARGE)), 1, f"charges of the card in {trip.lines()}")
    same(answer, ANSWER, "the resumed run's answer")
    same(
        [(row.key, row.calls) for row in usage],
        [(MODEL, TURNS)],
        "model calls engine.usage counts for the killed and resumed run (each turn once)",
    )
    _, tools = _steps(nodes)
    same(_named(tools), sorted(TOOLS), "the recorded tool calls")
    same([t.status for t in tools if t.is_in_doubt()], [], "tool calls left in doubt")
    same([t.status for t in tools], [Status.SUCCESS] * len(TOOLS), "the tool calls' status")
    before = trip.lines()
    async with runtime(url) as again:
        same(await scenario.run(again, trip, "trip-killed"), ANSWER, "the finished run's answer")
    same(trip.model_calls(), TURNS, "model calls after running the finished run again")
    same(trip.lines()[len(before) :], [], "real tool calls running the finished run again")


async def test_mock_tools_replay_serves_tools_from_the_recording(
    scenario: AdapterScenario,
    tmp_path: Path,
    *,
    url: str | None = None,  # noqa: PT028
) -> None:
    """A replay with replay_of: the models run live, every tool is answered from the
    recording (the ledger does not move), the recording is not written to, and a call
    the recording does not have raises ReplayDivergedError without running."""
    url, trip = url or store_url(tmp_path), Trip(tmp_path / "trip")
    async with runtime(url) as live:
        same(await scenario.run(live, trip, "trip-recorded"), ANSWER, "the recorded run's answer")
        recorded = [v.to_dict() for v in await live.engine.versions("trip-recorded")]
        ledger = trip.lines()
        answer = await scenario.run(live, trip, "trip-replayed", replay_of="trip-recorded")
        same(trip.lines()[len(ledger) :], [], "real tool calls in the replay")
        same(answer, ANSWER, "the replay's answer")
        same(trip.model_calls(), 2 * TURNS, "model calls after the replay (they run live)")
        _, tools = _steps(await live.engine.list_nodes("trip-replayed"))
        same(_named(tools), sorted(TOOLS), "the replay's tool calls")
        mocked = [t.metadata.get("mocked") for t in tools]
        same(mocked, [True] * len(TOOLS), "the replay's tool calls marked mocked")
        drifted = dataclasses.replace(trip, choose="first")  # books LX-318: not recorded
        try:
            await scenario.run(live, drifted, "trip-drifted", replay_of="trip-recorded")
        except ReplayDivergedError as exc:
            if BOOK not in str(exc):
                raise AssertionError(f"the divergence does not name {BOOK}: {exc}") from exc
        else:
            raise AssertionError("a replay answered a call the recording does not have")
        same(trip.lines()[len(ledger) :], [], "real tool calls in the diverged replay")
        after = [v.to_dict() for v in await live.engine.versions("trip-recorded")]
        same(len(after), len(recorded), "versions of the recording after two replays")
        same(after, recorded, "the recording after two replays")


async def test_model_turns_are_costed(
    scenario: AdapterScenario,
    tmp_path: Path,
    *,
    url: str | None = None,  # noqa: PT028
) -> None:
    """Every model turn is recorded with its model, tokens and its cost from the price
    table, and the store adds them up by model and by execution."""
    url, trip = url or store_url(tmp_path), Trip(tmp_path / "trip")
    one = PRICES.cost(MODEL, PROMPT_TOKENS, COMPLETION_TOKENS) or 0.0
    async with runtime(url) as live:
        same(await scenario.run(live, trip, "trip-costed"), ANSWER, "the run's answer")
        turns, _ = _steps(await live.engine.list_nodes("trip-costed"))
        usage = await live.engine.usage("model", execution_ids=["trip-costed"])
        summary = (await live.executions(ids=["trip-costed"]))[0]
    same(
        [(t.model, t.prompt_tokens, t.completion_tokens, t.status) for t in turns],
        [(MODEL, PROMPT_TOKENS, COMPLETION_TOKENS, Status.SUCCESS)] * TURNS,
        "the recorded model turns (model, prompt and completion tokens, status)",
    )
    for turn in turns:
        close_to(turn.cost, one, f"the cost of model turn {turn.id}")
    same(
        [(r.key, r.calls, r.prompt_tokens, r.completion_tokens) for r in usage],
        [(MODEL, TURNS, TURNS * PROMPT_TOKENS, TURNS * COMPLETION_TOKENS)],
        "engine.usage('model') of the execution",
    )
    close_to(usage[0].cost, TURNS * one, "the model's cost in engine.usage")
    same(
        (summary.prompt_tokens, summary.completion_tokens),
        (TURNS * PROMPT_TOKENS, TURNS * COMPLETION_TOKENS),
        "the tokens runtime.executions() gives the execution",
    )
    close_to(summary.cost, TURNS * one, "the cost runtime.executions() gives the execution")


async def test_show_lists_turns_and_tools(
    scenario: AdapterScenario,
    tmp_path: Path,
    *,
    url: str | None = None,  # noqa: PT028
) -> None:
    """`livingai --store URL show EXECUTION` (the `cli` extra) lists the model turns
    with their model and tokens, and the tool calls by name, none in doubt."""
    if importlib.util.find_spec("click") is None or importlib.util.find_spec("rich") is None:
        raise unittest.SkipTest('livingai show needs the cli extra: pip install "livingai[cli]"')
    url, trip = url or store_url(tmp_path), Trip(tmp_path / "trip")
    async with runtime(url) as live:
        same(await scenario.run(live, trip, "trip-shown"), ANSWER, "the run's answer")
    shown = json.loads(await _cli("--store", url, "show", "trip-shown", "--json"))
    nodes: list[dict[str, Any]] = shown["nodes"]
    same(
        [(n["model"], n["prompt_tokens"]) for n in nodes if n["type"] == "PROMPT" and n["model"]],
        [(MODEL, PROMPT_TOKENS)] * TURNS,
        "the model turns `show --json` lists",
    )
    same(
        sorted((n["metadata"].get("step"), n["status"]) for n in nodes if n["type"] == "TOOL"),
        sorted((tool, "SUCCESS") for tool in TOOLS),
        "the tool calls `show --json` lists",
    )
    same([n["id"] for n in nodes if n["in_doubt"]], [], "what `show --json` shows in doubt")
    totals = shown["totals"]
    same(
        (totals["prompt_tokens"], totals["completion_tokens"], totals["in_doubt"]),
        (TURNS * PROMPT_TOKENS, TURNS * COMPLETION_TOKENS, 0),
        "the totals of `show --json`",
    )
    text = await _cli("--store", url, "show", "trip-shown")
    for name in (*TOOLS, MODEL):
        if name not in text:
            raise AssertionError(f"`livingai show` does not show {name}:\n{text}")


async def _cli(*args: str) -> str:
    """`python -m livingai ARGS`: its stdout, once it succeeded."""
    env = {**child_env(), "COLUMNS": "250", "TTY_INTERACTIVE": "0", "NO_COLOR": "1"}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "livingai", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"livingai {' '.join(args)} failed: {done.stderr[-3000:]}")
    return done.stdout


SCENARIO_TESTS: list[ScenarioCheck] = [
    test_killed_mid_charge_resumes_and_charges_once,
    test_mock_tools_replay_serves_tools_from_the_recording,
    test_model_turns_are_costed,
    test_show_lists_turns_and_tools,
]

__all__ = [
    "ANSWER",
    "COMPLETION_TOKENS",
    "MODEL",
    "PRICES",
    "PROMPT_TOKENS",
    "REQUEST",
    "SCENARIO_TESTS",
    "AdapterScenario",
    "Answer",
    "ScenarioCheck",
    "ToolCall",
    "Trip",
    "Turn",
]
