"""The package surface: exports, typing marker, and a core that needs no extras."""

from __future__ import annotations

import importlib
import importlib.resources
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import livingai

EXPECTED_ALL = [
    "MAX_PAGE",
    "NOT_DONE",
    "BacklogFullError",
    "CheckpointCorruptError",
    "CheckpointEngine",
    "CheckpointStore",
    "ClosedError",
    "Codec",
    "ConfigError",
    "EngineStats",
    "ErrorInfo",
    "ExecutionDiff",
    "ExecutionEntry",
    "ExecutionNode",
    "ExecutionNotFoundError",
    "ExecutionPage",
    "ExecutionSummary",
    "FencedError",
    "GcReport",
    "InDoubtError",
    "IndexStore",
    "InvalidNodeError",
    "Lease",
    "LeaseHeldError",
    "LeaseStore",
    "LivingAIError",
    "MemoryStore",
    "MissingExtraError",
    "NeedsHumanError",
    "NodeRecord",
    "NodeState",
    "NodeType",
    "NondeterminismError",
    "NotInStepError",
    "PageQuery",
    "PendingRun",
    "PostgresStore",
    "Price",
    "PriceTable",
    "RecordRejectedError",
    "RecoveredRun",
    "RecoveryEngine",
    "RecoveryPlan",
    "RedisStore",
    "ReplayDivergedError",
    "ReplayMode",
    "ReplayReport",
    "ReplayResult",
    "ReplaySession",
    "ReplayedRun",
    "RetentionStore",
    "Run",
    "Runtime",
    "SQLiteStore",
    "Status",
    "StepContext",
    "StepDiff",
    "StepFailedError",
    "StepNotFoundError",
    "StoreError",
    "StoreLimits",
    "StoreOutageError",
    "StoreUnusableError",
    "SummaryPage",
    "TieredStats",
    "TieredStore",
    "UsageBy",
    "UsageRow",
    "UsageStore",
    "WrongLoopError",
    "__version__",
    "current_run",
    "current_step",
    "human_reason",
    "open_store",
    "scrub_url",
    "state_view",
    "step_agent",
    "step_kind",
    "step_name",
    "step_position",
    "step_tree",
]

BLOCKED = [
    "zstandard",
    "redis",
    "psycopg",
    "psycopg_pool",
    "asyncpg",
    "langgraph",
    "crewai",
    "agents",
    "fastapi",
]


def _run_python(
    script: str, *args: str, flags: tuple[str, ...] = (), cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, *flags, "-W", "error", "-", *args],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, f"child failed:\n{result.stdout}\n{result.stderr}"
    return result


def _marked_lines(stdout: str) -> dict[str, str]:
    lines: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            lines[key] = value
    return lines


# -- (a) exports ------------------------------------------------------------------------------


def test_all_is_pinned() -> None:
    assert livingai.__all__ == EXPECTED_ALL  # in ruff's order: constants, then the rest
    assert len(set(EXPECTED_ALL)) == len(EXPECTED_ALL)


def test_every_exported_name_is_importable() -> None:
    module = importlib.import_module("livingai")
    for name in EXPECTED_ALL:
        assert hasattr(module, name), name
        exec(f"from livingai import {name}", {})  # the from-import form works too


def test_version_matches_distribution_metadata() -> None:
    from importlib.metadata import version

    assert livingai.__version__ == version("livingai")


# -- (b) py.typed ---------------------------------------------------------------------------------


def test_py_typed_ships_in_the_package_dir() -> None:
    marker = importlib.resources.files("livingai").joinpath("py.typed")
    assert marker.is_file()
    assert (Path(livingai.__file__).parent / "py.typed").is_file()


# -- (c) the core works with every extra blocked --------------------------------------------

_BLOCKING_PRELUDE = """
import importlib.abc
import sys

BLOCKED = set(sys.argv[1].split(","))


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


already = [name for name in sys.modules if name.partition(".")[0] in BLOCKED]
assert not already, already
sys.meta_path.insert(0, Blocker())
"""

_CORE_SCRIPT = (
    _BLOCKING_PRELUDE
    + """
import asyncio
import json
import os
import tempfile

import livingai
from livingai import (
    CheckpointEngine,
    Codec,
    ExecutionNode,
    MemoryStore,
    MissingExtraError,
    NodeType,
    RecoveryEngine,
    SQLiteStore,
    Status,
)


async def main(path):
    engine = CheckpointEngine(SQLiteStore(path))
    print(f"DEFAULT_CODEC={engine.codec.name}")
    prompt = ExecutionNode(execution_id="run-1", type=NodeType.PROMPT, status=Status.SUCCESS)
    tool = ExecutionNode(execution_id="run-1", type="TOOL", parent_id=prompt.id, status="SUCCESS")
    memory = ExecutionNode(execution_id="run-1", type=NodeType.MEMORY, parent_id=tool.id)
    state = b"agent state " * 500
    await engine.save(prompt, state)
    await engine.save(tool)
    await engine.save(memory)
    await engine.flush()
    await engine.close()

    # A fresh engine on the same file: everything comes from disk.
    reader = CheckpointEngine(SQLiteStore(path))
    raw = await reader.store.read(prompt.id)
    print(f"STORED_CODEC_BYTE={raw.checkpoint[0]}")
    loaded = await reader.load(prompt.id)
    assert loaded is not None and loaded.state == state, loaded
    plan = await RecoveryEngine(reader).plan("run-1")
    assert plan.resume_node_id == prompt.id, plan
    assert plan.state == state
    assert [n.id for n in plan.skipped_nodes] == [tool.id], plan.skipped_nodes
    assert [n.id for n in plan.replay_nodes] == [memory.id], plan.replay_nodes
    await reader.close()

    try:
        CheckpointEngine(MemoryStore(), codec=Codec.ZSTD)
    except MissingExtraError as exc:
        print(f"ZSTD_ERROR={exc}")
    else:
        print("ZSTD_ERROR=none raised")


with tempfile.TemporaryDirectory() as tmp:
    asyncio.run(main(os.path.join(tmp, "core.db")))

loaded_blocked = sorted(n for n in sys.modules if n.partition(".")[0] in BLOCKED)
print(f"BLOCKED_LOADED={json.dumps(loaded_blocked)}")
print("MARKER=livingai-core-ok")
"""
)


def test_core_works_with_extras_blocked(tmp_path: Path) -> None:
    result = _run_python(_CORE_SCRIPT, ",".join(BLOCKED), cwd=tmp_path)
    lines = _marked_lines(result.stdout)
    assert lines.get("MARKER") == "livingai-core-ok", result.stdout
    assert lines["DEFAULT_CODEC"] == "ZLIB"
    assert lines["STORED_CODEC_BYTE"] == "1"
    assert json.loads(lines["BLOCKED_LOADED"]) == []
    assert 'pip install "livingai[zstd]"' in lines["ZSTD_ERROR"]
    assert result.stderr == ""


def test_blocker_really_blocks(tmp_path: Path) -> None:
    """The prelude must make a blocked import fail, or the test above proves nothing."""
    script = (
        _BLOCKING_PRELUDE
        + """
import importlib
for name in BLOCKED:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        print(f"BLOCKED_{name}=yes")
    else:
        print(f"BLOCKED_{name}=no")
"""
    )
    lines = _marked_lines(_run_python(script, ",".join(BLOCKED), cwd=tmp_path).stdout)
    assert {name: lines.get(f"BLOCKED_{name}") for name in BLOCKED} == dict.fromkeys(BLOCKED, "yes")


# -- (d) the wheel, installed alone, runs the demo ---------------------------------------------


@pytest.mark.timeout(300)
def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_demo(tmp_path: Path) -> None:
    """Built from the repository, installed without it on the path, no extras: the demo
    runs, and the metadata carries the licence as an SPDX expression (no warning)."""
    root = Path(__file__).resolve().parent.parent
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-w",
            str(tmp_path / "dist"),
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "deprecat" not in (build.stdout + build.stderr).lower()
    (wheel,) = (tmp_path / "dist").glob("livingai-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    away = tmp_path / "elsewhere"  # not the repository: only the installed copy is importable
    away.mkdir()
    demo = subprocess.run(
        [python, "-W", "error", "-m", "livingai.demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=away,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert re.search(r"Acknowledged saves found on disk: (\d+) of \1  OK", demo.stdout), demo.stdout
    where = subprocess.run(
        [
            python,
            "-c",
            "import livingai, importlib.metadata as m; print(livingai.__file__); "
            "print(m.metadata('livingai')['License-Expression'])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=away,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout.split("\n")
    assert where[0].startswith(str(venv))
    assert where[1] == "Apache-2.0"
