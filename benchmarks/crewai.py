"""CrewAI crews, side by side in one run: the bare crew, CrewAI's own CheckpointConfig,
and CrewAIAdapter on SQLite, Redis and PostgreSQL.

    python -m benchmarks.crewai [--kickoffs N] [--systems bare,checkpoint,ours]
                                [--stores sqlite,redis,postgres] [--json PATH]

Each system kicks the same crew off (crewai_workload.py: two tasks, 12 LLM calls and 10
tool calls a kickoff, a scripted LLM) `--kickoffs` times in a child process of its own,
under `.venv-crewai` (made as ./scripts/test makes it when missing), every kickoff timed.
Then each is killed with SIGKILL inside the second task's fourth tool call and kicked off
again in a fresh process, and the calls the fresh one made that the killed one had made
already are counted. It prints a table: kickoff p50/p99 (ms), the time added per call
over the bare crew at p50 and p99 (the kickoff's difference over its 22 calls), and the
repeated LLM and tool calls.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import runner
from .durable import provision
from .workload import summarize

REPO = runner.REPO
WORKLOAD = Path(__file__).resolve().parent / "crewai_workload.py"
VENV = REPO / ".venv-crewai"
REQUIREMENTS = ("-e", f"{REPO}[test-crewai]")  # as ./scripts/test installs it
STORES = ("sqlite", "redis", "postgres")
SYSTEMS = ("bare", "checkpoint", "ours")
CALLS = 22  # a kickoff's LLM and tool calls (crewai_workload.py)
SECONDS = 600.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crewai", description=__doc__)
    parser.add_argument("--kickoffs", type=int, default=30, help="timed kickoffs per system")
    parser.add_argument(
        "--systems",
        type=lambda v: runner.split_choices(v, SYSTEMS),
        default=list(SYSTEMS),
        help="comma-separated: bare,checkpoint,ours",
    )
    parser.add_argument(
        "--stores",
        type=lambda v: runner.split_choices(v, STORES),
        default=list(STORES),
        help="comma-separated: sqlite,redis,postgres (ours)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    return parser.parse_args(argv)


def _complete(python: Path) -> bool:
    return runner.probe(python, "import crewai, livingai.adapters.crewai")


def ensure_python() -> tuple[Path | None, str]:
    """The python with CrewAI and our adapter: this one, else `.venv-crewai`."""
    here = Path(sys.executable)
    if _complete(here):
        return here, str(here)
    return runner.ensure_venv(VENV, REQUIREMENTS, _complete)


def _crash_and_resume(python: Path, args: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Kill a kickoff inside the second task, then kick it off again in a fresh process."""
    command = [str(python), str(WORKLOAD), json.dumps({**args, "mode": "crash"})]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=workdir) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip() == "hanging":
                break
        child.kill()
    return runner.run_child(python, {**args, "mode": "resume"}, SECONDS, workdir, WORKLOAD)


def run_system(python: Path, system: str, store: str | None, kickoffs: int) -> dict[str, Any]:
    """One system's timed kickoffs and its crash, each on a fresh store and directory."""
    row: dict[str, Any] = {"system": system, "store": store or "-"}
    for phase in ("run", "crash"):
        workdir = Path(tempfile.mkdtemp(prefix=f"livingai-bench-crewai-{system}-"))
        args: dict[str, Any] = {"system": system, "dir": str(workdir), "kickoffs": kickoffs}
        if store is None:
            result = _phase(python, phase, args, workdir)
        else:
            with provision("ours", store, workdir) as place:
                result = _phase(python, phase, {**args, "url": place.spec["url"]}, workdir)
        if "error" in result:
            row.setdefault("error", f"{phase}: {result['error']}")
        elif phase == "run":
            row["kickoff_ms"] = summarize(result["kickoff_ms"])
            row["samples"] = result["kickoff_ms"]
        else:
            row.update(llm_repeated=result["llm_repeated"], tool_repeated=result["tool_repeated"])
    return row


def _phase(python: Path, phase: str, args: dict[str, Any], workdir: Path) -> dict[str, Any]:
    if phase == "run":
        return runner.run_child(python, {**args, "mode": "run"}, SECONDS, workdir, WORKLOAD)
    return _crash_and_resume(python, args, workdir)


def table(rows: Sequence[dict[str, Any]]) -> str:
    bare = next((r for r in rows if r["system"] == "bare" and "kickoff_ms" in r), None)
    head = (
        f"{'system':<11}{'store':<10}{'kickoff p50':>12}{'p99':>9}"
        f"{'+ms/call p50':>14}{'p99':>8}{'LLM again':>11}{'tools again':>13}"
    )
    lines = [head]
    for row in rows:
        if "kickoff_ms" not in row:
            lines.append(f"{row['system']:<11}{row['store']:<10}  {row.get('error', '?')}")
            continue
        ms = row["kickoff_ms"]
        added = ("-", "-")
        if bare is not None and row is not bare:
            base = bare["kickoff_ms"]
            added = (
                f"{(ms['p50'] - base['p50']) / CALLS:+.3f}",
                f"{(ms['p99'] - base['p99']) / CALLS:+.3f}",
            )
        again = (str(row.get("llm_repeated", "-")), str(row.get("tool_repeated", "-")))
        lines.append(
            f"{row['system']:<11}{row['store']:<10}{ms['p50']:>12.2f}{ms['p99']:>9.2f}"
            f"{added[0]:>14}{added[1]:>8}{again[0]:>11}{again[1]:>13}"
            + (f"  ({row['error']})" if "error" in row else "")
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    python, how = ensure_python()
    if python is None:
        print(f"benchmarks.crewai: no python with CrewAI: {how}", file=sys.stderr)
        return 1
    print(f"CrewAI under {python} ({how}); {opts.kickoffs} kickoffs per system", flush=True)
    plan: list[tuple[str, str | None]] = [
        (system, None) for system in ("bare", "checkpoint") if system in opts.systems
    ]
    if "ours" in opts.systems:
        plan += [("ours", store) for store in opts.stores]
    rows = []
    for system, store in plan:
        problem = runner.server_problem(store) if store in ("redis", "postgres") else None
        if problem is not None:
            rows.append({"system": system, "store": store, "error": problem})
            continue
        rows.append(run_system(python, system, store, opts.kickoffs))
        print(f"  {system} {store or ''}: done", flush=True)
    print(table(rows))
    if opts.json is not None:
        opts.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
