"""Costs: the usage a step returns is recorded on its node, priced by a table users
extend or override, and added up by the store (by execution, model, day, or in a time
range), on every store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from livingai import CheckpointEngine, ConfigError, Price, PriceTable, Run, Runtime
from tests.conftest import StoreFactory


def test_a_price_is_found_by_exact_name_then_by_longest_prefix() -> None:
    table = PriceTable({"acme-1": Price(1.0, 2.0), "acme-1-large": Price(10.0, 20.0)})
    assert table.price("acme-1") == Price(1.0, 2.0)
    assert table.price("acme-1-large-2026-01") == Price(10.0, 20.0)
    assert table.price("acme-1-2026-01") == Price(1.0, 2.0)
    assert table.price("gpt-4o-mini-2024-07-18") == table.price("gpt-4o-mini")
    assert table.price("gpt-4o-mini") != table.price("gpt-4o")
    assert table.cost("acme-1", 1_000_000, 500_000) == pytest.approx(2.0)


def test_users_override_and_drop_the_defaults() -> None:
    assert PriceTable({"gpt-4o": Price(1.0, 1.0)}).price("gpt-4o") == Price(1.0, 1.0)
    empty = PriceTable(defaults=False)
    assert empty.price("gpt-4o") is None
    empty.set("gpt-4o", Price(5.0, 15.0))
    assert empty.cost("gpt-4o", 1000, 1000) == pytest.approx(0.02)


def test_an_unknown_model_has_no_cost_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = PriceTable(defaults=False)
    with caplog.at_level(logging.WARNING, logger="livingai"):
        assert table.cost("mystery-7b", 10, 10) is None
        assert table.cost("mystery-7b", 10, 10) is None
    assert [r.getMessage().count("mystery-7b") for r in caplog.records] == [1]


@pytest.mark.parametrize("amount", ["1.0", -1.0, float("nan"), float("inf"), True, None])
def test_bad_prices_are_refused_naming_them(amount: Any) -> None:
    with pytest.raises(ConfigError, match="dollars per million tokens"):
        Price(amount, 1.0)


@pytest.mark.parametrize(("model", "price"), [("", Price(1, 1)), ("m", (1, 1))])
def test_bad_price_table_entries_are_refused(model: str, price: Any) -> None:
    with pytest.raises(ConfigError):
        PriceTable({model: price})


def openai_style(model: str, prompt: int, completion: int) -> dict[str, Any]:
    return {
        "text": "ok",
        "model": model,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }


@pytest.fixture
async def runtime(store_factory: StoreFactory) -> AsyncIterator[Runtime]:
    prices = PriceTable({"small": Price(1.0, 2.0), "large": Price(10.0, 30.0)}, defaults=False)
    engine = CheckpointEngine(store_factory())
    async with Runtime(engine, worker_id="tester", prices=prices) as opened:
        yield opened


async def test_steps_record_usage_in_every_shape_and_the_store_adds_it_up(
    runtime: Runtime,
) -> None:
    anthropic_style = {"model": "large", "usage": {"input_tokens": 2000, "output_tokens": 100}}
    reported = {
        "model": "small",
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "cost": 7.5},
    }

    async def agent(run: Run) -> str:
        await run.step("a", lambda: openai_style("small", 1000, 500))
        await run.step("b", lambda: openai_style("large", 1000, 500))
        await run.step("c", lambda: anthropic_style)
        await run.step("d", lambda: reported)  # a gateway's own cost wins
        await run.step("e", lambda: {"usage": "none"})  # no usage: nothing recorded
        return "done"

    await runtime.run(agent, execution_id="costly")
    await runtime.run(agent, execution_id="costly-too")
    nodes = {n.metadata.get("step"): n for n in await runtime.engine.list_nodes("costly")}
    assert (nodes["a"].model, nodes["a"].prompt_tokens, nodes["a"].completion_tokens) == (
        "small",
        1000,
        500,
    )
    assert nodes["a"].cost == pytest.approx(0.002)
    assert nodes["a"].cost_tokens == 1500
    assert nodes["b"].cost == pytest.approx(0.025)
    assert (nodes["c"].prompt_tokens, nodes["c"].completion_tokens) == (2000, 100)
    assert nodes["c"].cost == pytest.approx(0.023)
    assert nodes["d"].cost == 7.5
    assert nodes["e"].model is None
    assert nodes["e"].cost is None

    by_model = {row.key: row for row in await runtime.engine.usage("model")}
    assert by_model["small"].calls == 4
    assert by_model["large"].calls == 4
    assert by_model["large"].cost == pytest.approx(2 * (0.025 + 0.023))
    assert by_model["small"].prompt_tokens == 2 * 1010
    by_execution = {row.key: row for row in await runtime.engine.usage("execution")}
    assert by_execution["costly"].cost == pytest.approx(0.002 + 0.025 + 0.023 + 7.5)
    today = datetime.now(UTC).date().isoformat()
    assert [row.key for row in await runtime.engine.usage("day")] == [today]
    later = datetime.now(UTC) + timedelta(days=2)
    assert await runtime.engine.usage("total", since=later) == []
    summaries = {s.execution_id: s for s in await runtime.executions(min_cost=7.0)}
    assert set(summaries) == {"costly", "costly-too"}
    assert summaries["costly"].cost == pytest.approx(7.55)
    assert await runtime.executions(min_cost=100.0) == []
