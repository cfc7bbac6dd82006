"""LangGraph checkpointers side by side: livingai's `LivingAISaver` against LangGraph's own.

`python -m benchmarks.langgraph` runs two parts and prints a table for each:

- storage: a 20-turn chat over a 100 KB document that never changes; the bytes each
  system keeps for it, LangGraph's `SqliteSaver` against ours on every store;
- speed: 50 graphs at once, 20 super-steps each; `aput` / `aget_tuple` latency and wall
  time, `AsyncSqliteSaver` and `AsyncPostgresSaver` against ours on every store.

Every (part, store, system) runs in a child process of its own, with a timeout, on a store
of its own that is removed afterwards (errors, timeouts and Ctrl-C too): a fresh SQLite
file in a temporary directory, a unique Redis key prefix, a unique Postgres schema (ours)
or database (AsyncPostgresSaver). The baselines run under virtualenvs of their own in
`.bench/`, made on first use. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import durable, runner
from .workload import summarize

REPO = runner.REPO
WORKLOAD = Path(__file__).resolve().parent / "langgraph_workload.py"
STORES = durable.STORES
PARTS = ("storage", "speed")
SYSTEMS = ("ours", "sqlite-saver", "postgres-saver")  # what --systems names
OURS = "ours"
SQLITE_SAVER = "SqliteSaver"
ASYNC_SQLITE = "AsyncSqliteSaver"
ASYNC_POSTGRES = "AsyncPostgresSaver"
CHECKPOINTS_PER_TURN = 3  # input, the loop's start, the model's step

# LangGraph as installed in .venv for ours; the baselines get the same, and their saver.
LANGGRAPH_PINS = ("langgraph==1.2.24", "langgraph-checkpoint==4.3.2")


@dataclass(frozen=True)
class Baseline:
    """A LangGraph saver package from PyPI, in a virtualenv of its own."""

    system: str  # its --systems name
    venv: Path
    requirements: tuple[str, ...]  # every one pinned
    imports: str  # what must import for the venv to be usable


BASELINES = {
    "sqlite-saver": Baseline(
        "sqlite-saver",
        REPO / ".bench" / "langgraph-sqlite-venv",
        (*LANGGRAPH_PINS, "langgraph-checkpoint-sqlite==3.1.2"),
        "langgraph.checkpoint.sqlite.aio",
    ),
    "postgres-saver": Baseline(
        "postgres-saver",
        REPO / ".bench" / "langgraph-postgres-venv",
        (
            *LANGGRAPH_PINS,
            "langgraph-checkpoint-postgres==3.2.0",
            "psycopg[binary]==3.3.9",
            "psycopg-pool==3.3.3",
        ),
        "langgraph.checkpoint.postgres.aio, psycopg_pool",
    ),
}
# Which baseline's venv runs each baseline system, and on which store.
BASELINE_OF = {SQLITE_SAVER: "sqlite-saver", ASYNC_SQLITE: "sqlite-saver"}
BASELINE_OF[ASYNC_POSTGRES] = "postgres-saver"
BASELINE_ROWS = {
    "storage": ((SQLITE_SAVER, "sqlite"),),
    "speed": ((ASYNC_SQLITE, "sqlite"), (ASYNC_POSTGRES, "postgres")),
}

# The figures the issue quotes: SqliteSaver's bytes for this chat, and the speed of the
# async savers on a 2-core machine (aput only), low and high of the runs. They are the
# yardstick where a baseline did not run in this invocation (not with --quick).
REFERENCE_SQLITE_SAVER_BYTES = 8_860_000
STORAGE_TARGET = 10.0  # ours below a tenth of SqliteSaver's bytes
PUBLISHED = {
    ASYNC_SQLITE: {"aput p99": (52.0, 61.0), "total s": (0.6, 0.7)},
    ASYNC_POSTGRES: {"aput p99": (193.0, 231.0), "total s": (2.1, 2.6)},
}


@dataclass(frozen=True)
class Sizes:
    """How big each part is; the timeout bounds each child."""

    turns: int
    document_bytes: int
    human_bytes: int
    reply_bytes: int
    graphs: int
    steps: int
    message_bytes: int
    timeout_s: float


FULL = Sizes(20, 100_000, 300, 700, 50, 20, 500, 300.0)
QUICK = Sizes(3, 10_000, 300, 700, 5, 4, 500, 60.0)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.langgraph",
        description="LangGraph checkpointers: livingai's LivingAISaver side by side with "
        "SqliteSaver, AsyncSqliteSaver and AsyncPostgresSaver.",
    )
    parser.add_argument(
        "--parts",
        type=lambda v: runner.split_choices(v, PARTS),
        default=list(PARTS),
        help="comma-separated: storage,speed (default: both)",
    )
    runner.add_stores_option(parser, "our stores, ")
    parser.add_argument(
        "--systems",
        type=lambda v: runner.split_choices(v, SYSTEMS),
        default=list(SYSTEMS),
        help="comma-separated: ours,sqlite-saver,postgres-saver (default: all; 'ours' alone "
        "installs nothing)",
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run our children under cProfile, writing DIR/<part>-<store>.prof",
    )
    return parser.parse_args(argv)


# -- the baselines' virtualenvs ----------------------------------------------------------------


def pins(baseline: Baseline) -> dict[str, str]:
    """Distribution name -> pinned version (extras dropped)."""
    out = {}
    for requirement in baseline.requirements:
        name, _, version = requirement.partition("==")
        out[name.split("[")[0]] = version
    return out


def _baseline_complete(python: Path, baseline: Baseline) -> bool:
    """It imports, and has exactly the pinned versions."""
    return runner.probe(
        python,
        f"import {baseline.imports}; import importlib.metadata as m, sys; "
        f"sys.exit(any(m.version(n) != v for n, v in {pins(baseline)!r}.items()))",
    )


def ensure_baseline(baseline: Baseline) -> tuple[Path | None, str]:
    """The baseline's python, creating its venv on first use (`pip install` of the pins)
    and reusing it afterwards; or None and why not (no network, say)."""
    python, how = runner.ensure_venv(
        baseline.venv, baseline.requirements, lambda python: _baseline_complete(python, baseline)
    )
    if python is None:
        return None, how
    return python, f"{' '.join(baseline.requirements)}, {how} {baseline.venv}"


# -- stores ------------------------------------------------------------------------------------


@dataclass
class Place:
    """Where one run's data lives: what the child is given, what the output shows so
    that anyone can check it is gone, and how to measure it."""

    target: str = ""
    where: dict[str, str] = field(default_factory=dict)
    measures: list[Callable[[], dict[str, int]]] = field(default_factory=list)

    def measure(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for measure in self.measures:
            out.update(measure())
        return out


def _files_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def sqlite_bytes(db: Path) -> dict[str, int]:
    """The database's directory on disk (the file, its -wal and anything else), as left
    by the run and after a WAL checkpoint (TRUNCATE), the figure compared."""
    if not db.exists():
        return {"sqlite": 0, "sqlite_before_checkpoint": _files_bytes(db.parent)}
    before = _files_bytes(db.parent)
    with contextlib.closing(sqlite3.connect(db, timeout=30.0)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"sqlite": _files_bytes(db.parent), "sqlite_before_checkpoint": before}


def _value_bytes(client: Any, key: bytes) -> int:
    """The bytes of one key's value as stored: a string's length; a hash's fields and
    values; a list's, set's or sorted set's members (a score counts 8)."""
    kind = client.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if kind == "string":
        return int(client.strlen(key))
    if kind == "hash":
        return sum(len(f) + len(v) for f, v in client.hgetall(key).items())
    if kind == "list":
        return sum(len(v) for v in client.lrange(key, 0, -1))
    if kind == "set":
        return sum(len(v) for v in client.smembers(key))
    if kind == "zset":
        return sum(len(m) + 8 for m, _ in client.zrange(key, 0, -1, withscores=True))
    return 0


def redis_bytes(url: str, prefix: str) -> dict[str, int]:
    """The keys under the prefix: what Redis says they take in memory (MEMORY USAGE with
    SAMPLES 0, exact, the figure compared) and the bytes of their names and values."""
    client = runner.redis_client(url)
    try:
        memory = values = 0
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            memory += int(client.memory_usage(key, samples=0) or 0)
            values += len(key) + _value_bytes(client, key)
    finally:
        client.close()
    return {"redis": memory, "redis_values": values}


def _saver_database(token: str, place: Place, cleanup: contextlib.ExitStack) -> None:
    """A database of its own for AsyncPostgresSaver's fixed table names (or a schema of
    its own, reached through search_path)."""
    name = f"livingai_bench_lg_saver_{token}"
    dsn, schema = runner.own_database(name, cleanup)
    if schema is not None:
        place.target = durable.with_query(dsn, options=f"-csearch_path={schema}")
        place.where["postgres_schema"] = schema
    else:
        place.target = dsn
        place.where["postgres_database"] = name


@contextlib.contextmanager
def provision(system: str, store: str, workdir: Path) -> Iterator[Place]:
    """A store of this run's own, removed afterwards (on errors and timeouts too)."""
    token = uuid.uuid4().hex[:12]
    place = Place()
    with contextlib.ExitStack() as cleanup:
        if store == "sqlite":
            directory = workdir / "store"  # only the database's files: measured whole
            directory.mkdir()
            db = directory / ("ours.db" if system == OURS else "saver.db")
            place.target = f"sqlite:///{db}" if system == OURS else str(db)
            place.where["sqlite_dir"] = str(workdir)
            place.measures.append(lambda: sqlite_bytes(db))
        elif system == ASYNC_POSTGRES:
            _saver_database(token, place, cleanup)
        elif system != OURS:
            raise ValueError(f"{system} has no {store!r} store")
        else:
            urls = []
            if store in ("redis", "tiered"):
                prefix = f"livingai-bench-lg-{token}"
                cleanup.callback(runner.delete_redis_prefix, runner.REDIS_URL, prefix)
                urls.append(durable.with_query(runner.REDIS_URL, prefix=prefix))
                place.where["redis_prefix"] = prefix
                place.measures.append(lambda: redis_bytes(runner.REDIS_URL, prefix))
            if store in ("postgres", "tiered"):
                schema = f"livingai_bench_lg_{token}"
                cleanup.callback(runner.drop_schema, runner.POSTGRES_DSN, schema)
                urls.append(durable.with_query(runner.POSTGRES_DSN, schema=schema))
                place.where["postgres_schema"] = schema
                place.measures.append(
                    lambda: {"postgres": runner.postgres_bytes(runner.POSTGRES_DSN, schema)}
                )
            place.target = urls[0] if len(urls) == 1 else f"tiered:{urls[0]}|{urls[1]}"
        yield place


# -- one run -----------------------------------------------------------------------------------

COMPARED = ("sqlite", "redis", "postgres")  # the parts of a measure that count as bytes


def storage_row(head: dict[str, Any], sizes: Sizes, result: dict[str, Any]) -> dict[str, Any]:
    """A storage child's output as a row; wrong counts or content make it an error row."""
    row = {
        **head,
        "versions": result["versions"],
        "checkpoints": result["checkpoints"],
        "messages": result["messages"],
        "seconds": result["seconds"],
    }
    expected = sizes.turns * CHECKPOINTS_PER_TURN
    if not result["document_ok"]:
        row["error"] = "the document read back differs"
    elif result["messages"] != 2 * sizes.turns:
        row["error"] = f"{result['messages']} messages read back, expected {2 * sizes.turns}"
    elif result["checkpoints"] != expected:
        row["error"] = f"{result['checkpoints']} checkpoints, expected {expected}"
    return row


def speed_row(head: dict[str, Any], sizes: Sizes, result: dict[str, Any]) -> dict[str, Any]:
    """A speed child's output as a row: per-call percentiles (ms) and wall times."""
    samples = result["samples_ms"]
    row = {
        **head,
        "versions": result["versions"],
        "graphs": sizes.graphs,
        "steps": sizes.steps,
        "checkpoints": result["checkpoints"],
        "calls": {name: len(values) for name, values in samples.items()},
        "aget_tuple_misses": result["found"].count(False),
        "ms": {name: summarize(values) for name, values in samples.items()},
        "run_s": result["run_s"],
        "total_s": result["total_s"],
        "failures": result["failures"],
    }
    hits = [ms for ms, found in zip(samples["aget_tuple"], result["found"], strict=True) if found]
    row["ms"]["aget_tuple_hit"] = summarize(hits)  # reading a checkpoint, misses left out
    if result["failures"]:
        row["error"] = f"{len(result['failures'])} failures: {result['failures'][0]}"
    elif len(samples["aput"]) != result["checkpoints"]:
        row["error"] = f"{len(samples['aput'])} aput calls, {result['checkpoints']} checkpoints"
    return row


def run_one(
    part: str, system: str, store: str, python: Path, sizes: Sizes, profile: Path | None
) -> dict[str, Any]:
    """One (part, store, system) in a child on a fresh store, measured and removed."""
    head: dict[str, Any] = {"part": part, "store": store, "system": system}
    row = dict(head)
    workdir = Path(tempfile.mkdtemp(prefix=f"livingai-bench-lg-{system.lower()}-"))
    started = time.perf_counter()
    try:
        with provision(system, store, workdir) as place:
            row["where"] = dict(place.where)
            args: dict[str, Any] = {
                "part": part,
                "system": system,
                "target": place.target,
                "sizes": asdict(sizes),
            }
            if profile is not None and system == OURS:
                args["profile"] = str(profile.resolve() / f"{part}-{store}.prof")
            result = runner.run_child(python, args, sizes.timeout_s, workdir, WORKLOAD)
            if "error" in result:
                row["error"] = result["error"]
            elif part == "storage":
                row = {**storage_row(head, sizes, result), "where": row["where"]}
                measured = place.measure()
                row["measured"] = measured
                row["bytes"] = sum(measured.get(k, 0) for k in COMPARED)
            else:
                row = {**speed_row(head, sizes, result), "where": row["where"]}
    except Exception as exc:  # a server refused the set-up or the clean-up
        row["error"] = f"store set-up/clean-up: {type(exc).__name__}: {exc}"
    finally:
        row["wall_s"] = time.perf_counter() - started
        shutil.rmtree(workdir, ignore_errors=True)
    return row


# -- what can run ------------------------------------------------------------------------------


def ours_problem(store: str) -> str | None:
    """Why this repo's livingai cannot run LangGraph on this store (yet)."""
    try:
        module = importlib.import_module("livingai.adapters.langgraph")
    except ImportError as exc:
        return f"not available: livingai.adapters.langgraph does not import ({exc})"
    if not hasattr(module, "LivingAISaver"):
        return "not available: livingai.adapters.langgraph has no LivingAISaver (yet)"
    return runner.ours_problem(store)


def plan(
    parts: Sequence[str],
    stores: Sequence[str],
    servers: Mapping[str, str | None],
    ours: Mapping[str, str | None] | None,
    baselines: Mapping[str, str | None],
) -> list[tuple[str, str, str, str | None]]:
    """Every (part, store, system) in table order, each with why it cannot run (or None):
    the baselines first, then ours on each store. `servers`: why Redis / Postgres cannot
    be used; `ours`: why ours cannot run a store (None: not asked for); `baselines`: the
    baseline venvs asked for, with why each cannot be used."""
    needs = {"redis": ["redis"], "postgres": ["postgres"], "tiered": ["redis", "postgres"]}

    def down(store: str) -> str | None:
        return next(
            (f"not available: {p}" for k in needs.get(store, []) if (p := servers.get(k))),
            None,
        )

    out: list[tuple[str, str, str, str | None]] = []
    for part in parts:
        for system, store in BASELINE_ROWS[part]:
            venv = BASELINE_OF[system]
            if venv in baselines:
                out.append((part, store, system, baselines[venv] or down(store)))
        if ours is not None:
            out.extend((part, store, OURS, ours.get(store) or down(store)) for store in stores)
    return out


# -- comparisons -------------------------------------------------------------------------------


def _measured(row: Mapping[str, Any]) -> bool:
    return "error" not in row and "skipped" not in row


def storage_verdicts(rows: Sequence[Mapping[str, Any]], quick: bool) -> list[dict[str, Any]]:
    """Each of our measured storage rows against SqliteSaver's bytes from this run, or
    (not with --quick) against the reference figure: ratio ours/SqliteSaver, and whether
    ours is under a tenth of it."""
    saver = next((r for r in rows if r["system"] == SQLITE_SAVER and _measured(r)), None)
    if saver is not None:
        basis, theirs = "measured", int(saver["bytes"])
    elif not quick:
        basis, theirs = "reference", REFERENCE_SQLITE_SAVER_BYTES
    else:
        basis, theirs = "none", 0
    out = []
    for row in rows:
        if row["system"] != OURS or not _measured(row):
            continue
        ratio = row["bytes"] / theirs if theirs else None
        out.append(
            {
                "store": row["store"],
                "bytes": row["bytes"],
                "basis": basis,
                "saver_bytes": theirs,
                "ratio": ratio,
                "ok": None if ratio is None else ratio < 1.0 / STORAGE_TARGET,
            }
        )
    return out


Figure = tuple[str, Callable[[Mapping[str, Any]], float]]  # a label, how to read it
FIGURES: tuple[Figure, ...] = (
    ("aput p50", lambda r: r["ms"]["aput"]["p50"]),
    ("aput p99", lambda r: r["ms"]["aput"]["p99"]),
    ("aget_tuple p50", lambda r: r["ms"]["aget_tuple"]["p50"]),
    ("aget_tuple p99", lambda r: r["ms"]["aget_tuple"]["p99"]),
    ("total s", lambda r: r["total_s"]),
)


def speed_verdicts(rows: Sequence[Mapping[str, Any]], quick: bool) -> list[dict[str, Any]]:
    """Each of our measured speed rows against each async baseline: every figure from
    this run (ratio baseline/ours, above 1: ours is faster), or where the baseline did not
    run (not with --quick) the published aput p99 and total, at their best."""
    baselines = {r["system"]: r for r in rows if r["system"] != OURS and _measured(r)}
    out = []
    for row in rows:
        if row["system"] != OURS or not _measured(row):
            continue
        for system in (ASYNC_SQLITE, ASYNC_POSTGRES):
            theirs = baselines.get(system)
            figures = []
            if theirs is not None:
                basis = "measured"
                for label, read in FIGURES:
                    figures.append((label, float(read(row)), float(read(theirs))))
            elif not quick:
                basis = "published"
                ours_by_label = dict((label, float(read(row))) for label, read in FIGURES)
                for label, (low, _) in PUBLISHED[system].items():
                    figures.append((label, ours_by_label[label], low))
            else:
                basis = "none"
            checks = [
                {
                    "figure": label,
                    "ours": mine,
                    "theirs": other,
                    "ratio": other / max(mine, 1e-9),
                    "ok": mine < other,
                }
                for label, mine, other in figures
            ]
            out.append(
                {
                    "store": row["store"],
                    "baseline": system,
                    "basis": basis,
                    "figures": checks,
                    "ok": all(c["ok"] for c in checks) if checks else None,
                }
            )
    return out


def _verdict(ok: bool | None) -> str:
    return "SKIP" if ok is None else "PASS" if ok else "FAIL"


def storage_lines(verdicts: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for v in verdicts:
        where = f"  {v['store']:<8}"
        if v["ok"] is None:
            out.append(f"{where}  SKIP no SqliteSaver figure to compare with (quick run)")
            continue
        what = "SqliteSaver's" if v["basis"] == "measured" else "the reference"
        out.append(
            f"{where}  {_verdict(v['ok'])} {v['bytes']:,} B = {v['ratio']:.4f} x {what} "
            f"{v['saver_bytes']:,} B (1/{1 / max(v['ratio'], 1e-12):.1f}; "
            f"target < 1/{STORAGE_TARGET:g})"
        )
    return out


def speed_lines(verdicts: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per store: a line per baseline with the ratios, then PASS/FAIL per figure."""
    out: list[str] = []
    store = None
    for v in verdicts:
        if v["store"] != store:
            store = v["store"]
            out.append(f"  ours on {store}:")
        label = f"{v['baseline']} ({v['basis']})"
        if v["ok"] is None:
            out.append(f"    vs {label:<31} SKIP: not run (quick run: no published figures)")
            continue
        ratios = ", ".join(f"{c['figure']} {c['ratio']:.2f}x" for c in v["figures"])
        out.append(f"    vs {label:<31} {ratios}  (baseline/ours; above 1: ours ahead)")
        for c in v["figures"]:
            unit = "s" if c["figure"].endswith(" s") else "ms"
            name = c["figure"].removesuffix(" s")
            out.append(
                f"      {_verdict(c['ok'])} {name}: ours {c['ours']:.3f} {unit} vs "
                f"{v['baseline']} {c['theirs']:.3f} {unit}"
            )
    return out


# -- report ------------------------------------------------------------------------------------

Columns = runner.Columns
STORAGE_COLUMNS: Columns = (
    ("store", "<", 8),
    ("system", "<", 18),
    ("checkpoints", ">", 11),
    ("bytes", ">", 11),
    ("vs SqliteSaver", ">", 14),
    ("target", "<", 6),
    ("measured as", "<", 11),
)
SPEED_COLUMNS: Columns = (
    ("store", "<", 8),
    ("system", "<", 18),
    ("graphs", ">", 6),
    ("aputs", ">", 5),
    ("aput p50", ">", 8),
    ("aput p99", ">", 8),
    ("get p50", ">", 8),
    ("get p99", ">", 8),
    ("writes p50", ">", 10),
    ("writes p99", ">", 10),
    ("run s", ">", 6),
    ("total s", ">", 7),
)


def _line(columns: Columns, cells: Sequence[str]) -> str:
    return runner.padded(columns, cells).rstrip()


def _table(columns: Columns, rows: Sequence[Mapping[str, Any]], cells: Any) -> str:
    out = [_line(columns, [c[0] for c in columns]), _line(columns, ["-" * c[2] for c in columns])]
    for row in rows:
        head = [row["store"], row["system"]]
        if "skipped" in row:
            out.append(_line(columns, head) + "  " + str(row["skipped"]))
        elif "error" in row:
            out.append(_line(columns, head) + "  ERROR: " + str(row["error"]))
        else:
            out.append(_line(columns, [*head, *cells(row)]))
    return "\n".join(out)


def _how(measured: Mapping[str, int]) -> str:
    """What the bytes are, in words."""
    parts = []
    if "sqlite" in measured:
        parts.append("file+wal, checkpointed")
    if "redis" in measured:
        parts.append(
            f"redis MEMORY USAGE {measured['redis']:,} (names+values {measured['redis_values']:,})"
        )
    if "postgres" in measured:
        parts.append(f"pg_total_relation_size {measured['postgres']:,}")
    return " + ".join(parts)


def storage_table(rows: Sequence[Mapping[str, Any]], quick: bool) -> str:
    """The storage table; ours against SqliteSaver (or, marked *, the reference figure)."""
    verdicts = {v["store"]: v for v in storage_verdicts(rows, quick)}

    def cells(row: Mapping[str, Any]) -> list[str]:
        if row["system"] == OURS:
            v = verdicts[row["store"]]
            mark = "*" if v["basis"] == "reference" else ""
            ratio = "-" if v["ratio"] is None else f"{v['ratio']:.4f}{mark}"
            met = "-" if v["ok"] is None else "yes" if v["ok"] else "NO"
        else:
            ratio, met = "1", ""
        return [
            str(row["checkpoints"]),
            f"{row['bytes']:,}",
            ratio,
            met,
            _how(row["measured"]),
        ]

    text = _table(STORAGE_COLUMNS, rows, cells)
    if any(v["basis"] == "reference" for v in verdicts.values()):
        text += f"\n* vs the reference figure, {REFERENCE_SQLITE_SAVER_BYTES:,} B (not run here)"
    return text


def speed_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The speed table: per-call latency (ms) as the graphs saw it, and wall times."""

    def cells(row: Mapping[str, Any]) -> list[str]:
        ms = row["ms"]
        return [
            str(row["graphs"]),
            str(row["calls"]["aput"]),
            f"{ms['aput']['p50']:.2f}",
            f"{ms['aput']['p99']:.2f}",
            f"{ms['aget_tuple']['p50']:.2f}",
            f"{ms['aget_tuple']['p99']:.2f}",
            f"{ms['aput_writes']['p50']:.2f}",
            f"{ms['aput_writes']['p99']:.2f}",
            f"{row['run_s']:.3f}",
            f"{row['total_s']:.3f}",
        ]

    text = _table(SPEED_COLUMNS, rows, cells)
    measured = [r for r in rows if _measured(r)]
    if measured:
        row = measured[0]
        text += (
            f"\nget = aget_tuple: {row['calls']['aget_tuple'] // row['graphs']} calls a graph "
            "(one at its start, finding no checkpoint yet; one reading its final state back); "
            "writes = aput_writes.\nrun s: until every graph returned and read its state "
            "back; total s: until the saver was closed too (everything stored)."
        )
    return text


def _versions(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """What each system ran with, as its child reported it."""
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        if "versions" in row:
            out.setdefault(row["system"], {}).update(row["versions"])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run both parts for every system asked for, print the tables and the targets,
    optionally write JSON. Exit status 1 when one of our runs failed, or a store named in
    --stores could not run for us; a baseline failing is a result."""
    opts = parse_args(argv)
    sizes = QUICK if opts.quick else FULL
    stores = opts.stores or list(STORES)
    needed = {BASELINE_OF[s] for part in opts.parts for s, _ in BASELINE_ROWS[part]}
    pythons: dict[str, Path] = {}
    baselines: dict[str, str | None] = {}
    notes: dict[str, str] = {}
    for name in SYSTEMS[1:]:
        if name not in opts.systems or name not in needed:
            continue
        python, notes[name] = ensure_baseline(BASELINES[name])
        baselines[name] = None if python else f"not available: {notes[name]}"
        if python is not None:
            pythons[name] = python
        print(f"{name}: {notes[name]}", flush=True)
    servers = {kind: runner.server_problem(kind) for kind in ("redis", "postgres")}
    ours = {store: ours_problem(store) for store in stores} if OURS in opts.systems else None
    matrix = plan(opts.parts, stores, servers, ours, baselines)
    livingai = importlib.import_module("livingai")
    revision = durable._revision()
    print(f"ours: livingai {livingai.__version__} ({revision})", flush=True)
    print(
        f"servers: Redis {runner.redact(runner.REDIS_URL)}, "
        f"PostgreSQL {runner.redact(runner.POSTGRES_DSN)}",
        flush=True,
    )
    failures = [
        f"{part} / {store} (ours): {problem}"
        for part, store, system, problem in matrix
        if system == OURS and problem and opts.stores is not None
    ]
    for part, store, system, problem in matrix:
        if problem:
            print(f"  {part:<8} {store:<8} {system:<18} {problem}", flush=True)

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    if opts.profile is not None:
        opts.profile.mkdir(parents=True, exist_ok=True)
    try:
        for part, store, system, problem in matrix:
            if problem:
                rows.append({"part": part, "store": store, "system": system, "skipped": problem})
                continue
            python = Path(sys.executable) if system == OURS else pythons[BASELINE_OF[system]]
            print(f"running {part:<8} {store:<8} {system:<18} ...", end="", flush=True)
            row = run_one(part, system, store, python, sizes, opts.profile)
            status = f" error: {row['error']}" if "error" in row else ""
            print(f" {row['wall_s']:.1f}s{status}", flush=True)
            rows.append(row)
    except KeyboardInterrupt:
        # run_one's clean-up has run by now: its child is killed, its store removed.
        print("\ninterrupted: the child was stopped and its store removed", flush=True)
        return 130

    storage = [r for r in rows if r["part"] == "storage"]
    speed = [r for r in rows if r["part"] == "speed"]
    storage_checks = storage_verdicts(storage, opts.quick)
    speed_checks = speed_verdicts(speed, opts.quick)
    note = " (quick run: small counts, indicative only)" if opts.quick else ""
    if storage:
        print(
            f"\nstorage: a {sizes.turns}-turn chat on one thread, a "
            f"{sizes.document_bytes:,}-byte document set once, messages growing "
            f"~{sizes.human_bytes + sizes.reply_bytes:,} bytes a turn{note}"
        )
        print(storage_table(storage, opts.quick))
        lines = storage_lines(storage_checks)
        if lines:
            print(f"targets (ours below 1/{STORAGE_TARGET:g} of SqliteSaver's bytes):")
            print("\n".join(lines))
    if speed:
        print(
            f"\nspeed: {sizes.graphs} graphs at once, {sizes.steps} super-steps each, "
            f"latency in ms as the graphs saw it{note}"
        )
        print(speed_table(speed))
        lines = speed_lines(speed_checks)
        if lines:
            print("targets (ours ahead of each baseline on every figure):")
            print("\n".join(lines))
    failures += [
        f"{row['part']} / {row['store']} (ours): {row['error']}"
        for row in rows
        if row["system"] == OURS and "error" in row
    ]
    versions = _versions(rows)
    if versions:
        print("\nversions:")
        for system, found in versions.items():
            print(f"  {system:<18} " + ", ".join(f"{k} {v}" for k, v in found.items()))
    if failures:
        print("\nFAILED:")
        print("\n".join(f"  {failure}" for failure in failures))
    print(f"\ntotal {time.perf_counter() - started:.0f}s")

    if opts.json is not None:
        report = {
            "meta": {
                "ours": {"version": livingai.__version__, "revision": revision},
                "baselines": notes,
                "versions": versions,
                "python": sys.version,
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "quick": opts.quick,
                "sizes": asdict(sizes),
                "stores": stores,
                "systems": opts.systems,
                "servers": {
                    "redis": runner.redact(runner.REDIS_URL),
                    "postgres": runner.redact(runner.POSTGRES_DSN),
                },
            },
            "storage": storage,
            "speed": speed,
            "storage_targets": storage_checks,
            "speed_targets": speed_checks,
            "failures": failures,
        }
        opts.json.write_text(json.dumps(report, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
