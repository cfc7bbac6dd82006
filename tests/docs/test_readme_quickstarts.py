"""The README's quickstarts run as they are written (tests/quickstarts.py): the durable
run and LangGraph's here, each framework's in its own venv (tests/<framework>/
test_quickstart.py). A quickstart that stops working fails here."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from livingai import CheckpointEngine, SQLiteStore, Status
from tests.quickstarts import NAMES, README, inside, quickstarts, run_quickstart


def test_every_quickstart_in_the_readme_has_its_test() -> None:
    assert tuple(quickstarts()) == NAMES


def test_the_durable_run_quickstart_charges_once_and_answers_again_from_the_log(
    tmp_path: Path,
) -> None:
    out, names = run_quickstart("durable", tmp_path)
    assert out == "{'receipt': 'R-order-42/1', 'amount': 42}\n"

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a finished run ran a step again")

    names["plan"] = names["charge"] = never  # the agent's functions, as main() finds them
    with inside(tmp_path) as again:
        asyncio.run(names["main"]())  # the same execution: its result comes from the log
    assert again.getvalue() == out
    assert sorted(path.name for path in tmp_path.iterdir())[0] == "agent.db"


def test_the_langgraph_quickstart_keeps_the_thread_in_the_store(tmp_path: Path) -> None:
    out, _ = run_quickstart("langgraph", tmp_path)
    assert out == "{'topic': 'durability', 'draft': 'a post about durability'}\n"

    async def thread() -> list[Status]:
        async with CheckpointEngine(SQLiteStore(tmp_path / "graphs.db")) as engine:
            assert await engine.list_executions() == ["t1"]
            return [node.status for node in await engine.list_nodes("t1")]

    statuses = asyncio.run(thread())
    assert statuses
    assert all(status is Status.SUCCESS for status in statuses)


def test_the_readme_commands_after_the_quickstarts_run_on_what_the_first_recorded(
    tmp_path: Path,
) -> None:
    """The `livingai` lines the README gives after the quickstarts (but `ui`, which serves
    until stopped), run on the store the durable run quickstart left, saved as app.py."""
    (tmp_path / "app.py").write_text(quickstarts()["durable"])
    run_quickstart("durable", tmp_path)
    text = README.read_text()
    block = text[text.index("Then look at what was recorded") :].split("```sh\n", 1)[1]
    lines = block.split("```", 1)[0].splitlines()
    env = dict(os.environ)
    commands = []
    for line in lines:
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            name, _, value = words[1].partition("=")
            env[name] = value
        elif words[:1] == ["livingai"] and words[1] != "ui":
            commands.append(words[1:])
    assert [words[0] for words in commands] == ["show", "replay", "recover"]
    for words in commands:
        done = subprocess.run(
            [sys.executable, "-m", "livingai", *words],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=env,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, ""), (words, done.stdout, done.stderr)
        assert "order-42" in done.stdout or "nothing to recover" in done.stdout, words
