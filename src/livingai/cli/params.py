"""The command line's own kinds of argument: times, steps, counterfactuals, agents.

Each fails as a click usage error (exit status 2) that names the option and says what
is expected."""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

Agent = Callable[..., Awaitable[Any]]

if TYPE_CHECKING:
    ParamType = click.ParamType[Any, Any]  # generic from click 8.4 on
else:
    ParamType = click.ParamType

_AGE = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Moment(ParamType):
    """An ISO 8601 date or time (naive: UTC), or an age before now (30m, 12h, 7d, 2w)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        age = _AGE.fullmatch(text)
        if age is not None:
            seconds = float(age["amount"]) * _SECONDS[age["unit"]]
            return datetime.now(UTC) - timedelta(seconds=seconds)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is not a date or time: write it in ISO 8601 (2026-01-31, "
                "2026-01-31T09:30, 2026-01-31T09:30:00+01:00; UTC when no offset is given) "
                "or as an age before now (30m, 12h, 7d, 2w)",
                param,
                ctx,
            )
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class StepParam(ParamType):
    """A step: its position (a number), or its name or node id."""

    name = "step"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return step_of(str(value))


def step_of(text: str) -> int | str:
    text = text.strip()
    return int(text) if text.isdigit() else text


class Counterfactual(ParamType):
    """STEP=JSON: a tool's new result, or a step's new input."""

    name = "step=json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        step, sep, raw = str(value).partition("=")
        if not sep or not step.strip():
            self.fail(
                f"{value!r} is not STEP=JSON: name the step (a position or a name), then "
                "'=', then its new value as JSON, e.g. search='[]' or choose='\"Pick one\"'",
                param,
                ctx,
            )
        try:
            new = json.loads(raw)
        except ValueError as exc:
            self.fail(
                f"the value after '=' in {value!r} is not JSON ({exc}); a string is written "
                "in double quotes: choose='\"Pick the cheapest\"'",
                param,
                ctx,
            )
        return step_of(step), new


class AgentParam(ParamType):
    """module:function, imported with the current directory on the path."""

    name = "module:function"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if callable(value):
            return value
        try:
            return load_agent(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def load_agent(spec: str) -> Agent:
    """The agent function `spec` (module:function) names; ValueError saying why not."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(
            f"{spec!r} is not module:function; name the agent's code as an import path, "
            "e.g. myapp.agents:book_trip"
        )
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)  # as `python -m` does: the project's own modules
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ValueError(
                f"no module {module_name!r} (looked in the current directory and the "
                f"installed packages): {exc}"
            ) from None
        raise ValueError(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise ValueError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no {attribute!r}") from None
    if not callable(found):
        raise ValueError(f"{spec!r} is a {type(found).__name__}, not an agent function")
    agent: Agent = found
    return agent
