"""What a model call cost: the usage a step returns, and a price table that turns tokens
into money.

A step records usage when its result carries it, in either of the shapes model clients
return: an OpenAI-style `usage` object (prompt_tokens, completion_tokens) or an
Anthropic-style one (input_tokens, output_tokens), next to a `model` name. A step's
result is stored as JSON, so return a client's response as a dict (`response.model_dump()`
with the OpenAI and Anthropic SDKs). A `cost` given in the usage wins over the price table
(some gateways report it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._core.errors import ConfigError
from .._core.model import ExecutionNode, is_amount

logger = logging.getLogger("livingai")


@dataclass(frozen=True)
class Price:
    """US dollars per million prompt (input) tokens and per million completion (output)
    tokens."""

    prompt: float
    completion: float

    def __post_init__(self) -> None:
        for name in ("prompt", "completion"):
            value = getattr(self, name)
            if not is_amount(value):
                raise ConfigError(
                    f"a price's {name} must be a number of dollars per million tokens >= 0; "
                    f"got {value!r}"
                )


# List prices of a few common models in US dollars per million tokens, as their
# providers published them in 2025. Prices change: pass your own (they win) for the
# models you pay for.
DEFAULT_PRICES: Mapping[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "o3-mini": Price(1.10, 4.40),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-opus-4": Price(15.00, 75.00),
}


class PriceTable:
    """Model name -> Price. A name matches exactly, else by its longest listed prefix
    ("gpt-4o-mini-2024-07-18" is priced as "gpt-4o-mini"). `prices` extend the defaults
    and override them; `defaults=False` starts from an empty table."""

    def __init__(self, prices: Mapping[str, Price] | None = None, *, defaults: bool = True) -> None:
        self._prices: dict[str, Price] = dict(DEFAULT_PRICES) if defaults else {}
        self._unpriced: set[str] = set()  # models already logged as having no price
        for model, price in (prices or {}).items():
            self.set(model, price)

    def __repr__(self) -> str:
        return f"PriceTable({len(self._prices)} models)"

    def set(self, model: str, price: Price) -> None:
        """Add a model's price, or replace it."""
        if not isinstance(model, str) or not model:
            raise ConfigError(f"a price table's model names are non-empty strings; got {model!r}")
        if not isinstance(price, Price):
            raise ConfigError(f"the price of {model!r} must be a Price; got {price!r}")
        self._prices[model] = price

    def price(self, model: str) -> Price | None:
        """The model's price: by exact name, else by the longest listed prefix; None when
        the table does not know the model."""
        found = self._prices.get(model)
        if found is not None:
            return found
        matches = [name for name in self._prices if model.startswith(name)]
        return self._prices[max(matches, key=len)] if matches else None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """What the call cost in US dollars, or None when the model has no price."""
        price = self.price(model)
        if price is None:
            if model not in self._unpriced:
                self._unpriced.add(model)
                logger.warning(
                    "%r has no price for model %r: its tokens are recorded, its cost is "
                    "not; add it with PriceTable.set",
                    self,
                    model,
                )
            return None
        return (prompt_tokens * price.prompt + completion_tokens * price.completion) / 1e6


@dataclass(frozen=True)
class Usage:
    """A model call's usage, as a step's result reported it."""

    model: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # as reported, when it was


def usage_of(result: Any) -> Usage | None:
    """The usage a step's result carries (see the module docstring), or None."""
    usage = _field(result, "usage")
    if usage is None:
        return None
    prompt = _tokens(usage, "prompt_tokens", "input_tokens")
    completion = _tokens(usage, "completion_tokens", "output_tokens")
    if prompt is None and completion is None:
        return None
    model = _field(result, "model")
    cost = _field(usage, "cost")
    return Usage(
        model=model if isinstance(model, str) and model else None,
        prompt_tokens=prompt or 0,
        completion_tokens=completion or 0,
        cost=float(cost) if is_amount(cost) else None,
    )


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else None


def _tokens(usage: Any, *names: str) -> int | None:
    for name in names:
        value = _field(usage, name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def record_usage(node: ExecutionNode, result: Any, prices: PriceTable) -> None:
    """Set the node's model, tokens and cost from the usage `result` carries, if any."""
    usage = usage_of(result)
    if usage is None:
        return
    node.model = usage.model
    node.prompt_tokens = usage.prompt_tokens
    node.completion_tokens = usage.completion_tokens
    node.cost_tokens = usage.prompt_tokens + usage.completion_tokens
    node.cost = usage.cost
    if node.cost is None and usage.model is not None:
        node.cost = prices.cost(usage.model, usage.prompt_tokens, usage.completion_tokens)
