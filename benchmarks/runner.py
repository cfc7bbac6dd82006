"""Runs every (tier, shape, system) in its own child process and reports side by side.

Each run gets a fresh SQLite file in a temporary directory, deleted afterwards, and a
timeout, so the whole suite stops by itself. Lost writes are counted by a second child
process that opens the file again. The reference (livingai 0.4.1 from PyPI) has the
same import name as ours, so it runs under its own virtualenv in `.bench/ref-venv`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = Path(__file__).resolve().parent / "workload.py"
REF_VENV = REPO / ".bench" / "ref-venv"
REF_REQUIREMENT = "livingai==0.4.1"
REF_VERSION = "0.4.1"
BUDGET_MS = 50.0
SYSTEMS = ("reference", "ours")
TIERS = ("single", "production", "hyperscale")
SHAPES = ("published", "realistic")


@dataclass(frozen=True)
class Tier:
    """How many agents save how much; timeouts bound each child process."""

    name: str
    agents: int
    saves: int
    min_size: int
    max_size: int
    reads: int
    timeout_s: float


FULL = {
    "single": Tier("single", 1, 2000, 50_000, 50_000, 2000, 600.0),
    "production": Tier("production", 50, 20, 5_000, 100_000, 0, 600.0),
    "hyperscale": Tier("hyperscale", 150, 10, 793_000, 793_000, 0, 1200.0),
}
QUICK = {
    "single": Tier("single", 1, 20, 50_000, 50_000, 20, 120.0),
    "production": Tier("production", 5, 3, 5_000, 100_000, 0, 120.0),
    "hyperscale": Tier("hyperscale", 5, 3, 793_000, 793_000, 0, 120.0),
}
VERIFY_TIMEOUT_S = 300.0


def _split(value: str, allowed: Sequence[str]) -> list[str]:
    """A comma-separated choice list, validated, in the order given."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown or not items:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}; got {value!r}")
    return list(dict.fromkeys(items))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="livingai checkpoint benchmarks: this repo side by side with 0.4.1.",
    )
    parser.add_argument(
        "--tiers",
        type=lambda v: _split(v, TIERS),
        default=list(TIERS),
        help="comma-separated: single,production,hyperscale (default: all)",
    )
    parser.add_argument(
        "--shapes",
        type=lambda v: _split(v, SHAPES),
        default=list(SHAPES),
        help="comma-separated: published,realistic (default: both)",
    )
    parser.add_argument("--no-reference", action="store_true", help="run ours only")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    return parser.parse_args(argv)


# -- the reference virtualenv ------------------------------------------------------------


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _reference_works(python: Path) -> bool:
    if not python.exists():
        return False
    probe = f"import livingai, sys; sys.exit(livingai.__version__ != {REF_VERSION!r})"
    try:
        done = subprocess.run(
            [str(python), "-c", probe], capture_output=True, timeout=60, cwd=tempfile.gettempdir()
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def ensure_reference(venv: Path = REF_VENV) -> tuple[Path | None, str]:
    """The reference's python, creating the venv if needed; or None and why not."""
    python = _venv_python(venv)
    if _reference_works(python):
        return python, f"reused {venv}"
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", REF_REQUIREMENT],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(step[:4])} failed: {exc}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, f"{' '.join(step[:4])} failed: {' | '.join(tail)}"
    if not _reference_works(python):
        return None, f"{REF_REQUIREMENT} installed into {venv} but does not import"
    return python, f"created {venv} with {REF_REQUIREMENT}"


# -- one run -------------------------------------------------------------------------------


def _child(python: Path, args: dict[str, Any], timeout: float, cwd: Path) -> dict[str, Any]:
    """Run the workload file with `python`; its last stdout line is its JSON result."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    try:
        done = subprocess.run(
            [str(python), str(WORKLOAD), json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s (child killed)"}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-4:])
        return {"error": f"exit code {done.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_one(system: str, python: Path, tier: Tier, shape: str, seed: int) -> dict[str, Any]:
    """One (system, tier, shape): a run child, then a verify child, on a fresh file."""
    with contextlib.suppress(AttributeError):
        os.sync()  # the previous run's dirty pages should not slow this one down
    workdir = Path(tempfile.mkdtemp(prefix=f"livingai-bench-{system}-"))
    db = workdir / "bench.db"
    ids_path = workdir / "ids.json"
    row: dict[str, Any] = {"system": system, "tier": tier.name, "shape": shape}
    try:
        args = {
            "mode": "run",
            "shape": shape,
            "agents": tier.agents,
            "saves": tier.saves,
            "min_size": tier.min_size,
            "max_size": tier.max_size,
            "reads": tier.reads,
            "budget_ms": BUDGET_MS,
            "seed": seed,
            "db": str(db),
            "ids_path": str(ids_path),
        }
        started = time.perf_counter()
        row.update(_child(python, args, tier.timeout_s, workdir))
        if "error" not in row:
            check = _child(
                python,
                {"mode": "verify", "db": str(db), "ids_path": str(ids_path)},
                VERIFY_TIMEOUT_S,
                workdir,
            )
            if "error" in check:
                row["error"] = f"verify: {check['error']}"
            else:
                row.update(check)
        row["wall_s"] = time.perf_counter() - started
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    expected = REF_VERSION if system == "reference" else None
    if "version" in row and expected is not None and row["version"] != expected:
        row["error"] = f"expected livingai {expected}, the child imported {row['version']}"
    return row


# -- report --------------------------------------------------------------------------------

_COLUMNS = (
    ("tier", "<", 10),
    ("shape", "<", 9),
    ("system", "<", 9),
    ("saves", ">", 5),
    ("SLA %", ">", 6),
    ("p50 ms", ">", 7),
    ("p99 ms", ">", 7),
    ("max ms", ">", 8),
    ("stall ms", ">", 8),
    ("durable s", ">", 9),
    ("disk MB", ">", 8),
    ("lost", ">", 5),
)


def _line(cells: Sequence[str]) -> str:
    """Cells padded to their columns; a short list (an error row) fills the first few."""
    columns = zip(cells, _COLUMNS, strict=False)
    return "  ".join(f"{cell:{align}{width}}" for cell, (_, align, width) in columns)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The main table, one line per run; a failed run shows its error instead."""
    out = [_line([name for name, _, _ in _COLUMNS]), _line(["-" * w for _, _, w in _COLUMNS])]
    for row in rows:
        head = [row["tier"], row["shape"], row["system"]]
        if "error" in row:
            out.append(_line(head) + "  ERROR: " + str(row["error"]))
            continue
        ms = row["save_ms"]
        out.append(
            _line(
                [
                    *head,
                    str(row["saves"]),
                    f"{row['sla_pct']:.1f}",
                    f"{ms['p50']:.2f}",
                    f"{ms['p99']:.2f}",
                    f"{ms['max']:.1f}",
                    f"{row['max_stall_ms']:.1f}",
                    f"{row['durable_s']:.2f}",
                    f"{row['disk_bytes'] / 1e6:.1f}",
                    str(row["lost"]),
                ]
            )
        )
    return "\n".join(out)


def reads_table(rows: Sequence[dict[str, Any]]) -> str:
    """Read latencies of the single tier: hot (cached) and cold (fresh engine)."""
    out = []
    for row in rows:
        if "hot_read_ms" not in row:
            continue
        hot, cold = row["hot_read_ms"], row["cold_read_ms"]
        out.append(
            f"  {row['shape']:<9}  {row['system']:<9}  hot p50 {hot['p50']:.3f} ms  "
            f"p99 {hot['p99']:.3f} ms  |  cold p50 {cold['p50']:.3f} ms  "
            f"p99 {cold['p99']:.3f} ms  (misses: hot {row['hot_read_misses']}, "
            f"cold {row['cold_read_misses']})"
        )
    return "\n".join(["single-agent reads (engine.load):", *out]) if out else ""


def ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """reference / ours per (tier, shape), from the two runs of this invocation."""
    found: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        if "error" not in row:
            found.setdefault((row["tier"], row["shape"]), {})[row["system"]] = row
    out = []
    for (tier, shape), pair in found.items():
        if "ours" in pair and "reference" in pair:
            ours, ref = pair["ours"], pair["reference"]
            out.append(
                {
                    "tier": tier,
                    "shape": shape,
                    "durable_ratio": ref["durable_s"] / max(ours["durable_s"], 1e-9),
                    "p99_ratio": ref["save_ms"]["p99"] / max(ours["save_ms"]["p99"], 1e-9),
                }
            )
    return out


def targets(rows: Sequence[dict[str, Any]], ratio_rows: Sequence[dict[str, Any]]) -> list[str]:
    """Our rows checked against the stated targets: PASS or FAIL with the number."""
    limit = BUDGET_MS + 10.0
    by_key = {(r["tier"], r["shape"]): r for r in ratio_rows}
    out = []
    for row in rows:
        if row["system"] != "ours" or "error" in row or row["tier"] == "single":
            continue
        checks: list[tuple[str, bool]] = [
            (f"all {row['saves']} durable (lost {row['lost']})", row["lost"] == 0),
            (
                f"max save {row['save_ms']['max']:.1f} <= {limit:.0f} ms",
                row["save_ms"]["max"] <= limit,
            ),
        ]
        if row["tier"] == "production":
            checks += [
                (f"SLA {row['sla_pct']:.1f}% >= 99%", row["sla_pct"] >= 99.0),
                (f"p99 {row['save_ms']['p99']:.1f} <= 25 ms", row["save_ms"]["p99"] <= 25.0),
            ]
        else:
            checks.append(
                (f"stall {row['max_stall_ms']:.1f} <= 20 ms", row["max_stall_ms"] <= 20.0)
            )
            ratio = by_key.get((row["tier"], row["shape"]))
            if ratio is not None:
                checks.append(
                    (
                        f"durable {ratio['durable_ratio']:.1f}x faster >= 5x",
                        ratio["durable_ratio"] >= 5.0,
                    )
                )
        text = ", ".join(f"{'PASS' if ok else 'FAIL'} {what}" for what, ok in checks)
        out.append(f"  {row['tier']:<10} {row['shape']:<9}  {text}")
    return out


def _git_revision() -> str:
    """Which commit of ours was measured (the code may change between runs)."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=REPO,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected matrix, print the table, optionally write JSON."""
    opts = parse_args(argv)
    tiers = QUICK if opts.quick else FULL
    systems: dict[str, Path] = {"ours": Path(sys.executable)}
    reference_note = "skipped (--no-reference)"
    if not opts.no_reference:
        python, reference_note = ensure_reference()
        if python is None:
            print(f"NOTE: reference unavailable, running ours only: {reference_note}", flush=True)
        else:
            systems = {"reference": python, **systems}
    revision = _git_revision()
    print(f"ours: {revision}; reference: {reference_note}", flush=True)

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for tier_name in opts.tiers:
        for seed, shape in enumerate(opts.shapes, start=1):
            for system in SYSTEMS:
                if system not in systems:
                    continue
                tier = tiers[tier_name]
                print(f"running {tier_name:<10} {shape:<9} {system:<9} ...", end="", flush=True)
                row = run_one(system, systems[system], tier, shape, seed)
                status = f" error: {row['error']}" if "error" in row else ""
                print(f" {row.get('wall_s', 0.0):.1f}s{status}", flush=True)
                rows.append(row)

    ratio_rows = ratios(rows)
    print()
    print(table(rows))
    for ratio in ratio_rows:
        print(
            f"{ratio['tier']} / {ratio['shape']}: reference/ours time-to-durable "
            f"{ratio['durable_ratio']:.1f}x, p99 save latency {ratio['p99_ratio']:.1f}x"
        )
    reads = reads_table(rows)
    if reads:
        print()
        print(reads)
    checked = [] if opts.quick else targets(rows, ratio_rows)
    if checked:
        print()
        print("targets (ours):")
        print("\n".join(checked))
    print(f"\ntotal {time.perf_counter() - started:.0f}s")

    if opts.json is not None:
        report = {
            "meta": {
                "ours_revision": revision,
                "python": sys.version,
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "quick": opts.quick,
                "budget_ms": BUDGET_MS,
                "reference": reference_note,
                "tiers": {name: vars(tiers[name]) for name in opts.tiers},
                "shapes": opts.shapes,
            },
            "runs": rows,
            "ratios": ratio_rows,
            "targets": checked,
        }
        opts.json.write_text(json.dumps(report, indent=2))
    return 1 if any("error" in row for row in rows) else 0
