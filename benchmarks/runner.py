"""Runs every (tier, shape, store, system) in its own child process; reports side by side.

Each run gets a store of its own, removed afterwards: a fresh SQLite file in a temporary
directory, a unique Redis key prefix, a unique Postgres schema (ours) or database (the
reference, whose key and table names are fixed), and a timeout, so the whole suite stops
by itself. Lost writes are counted by a second child process that opens the store again.
The reference (livingai 0.4.1 from PyPI) has the same import name as ours, so it runs
under its own virtualenv in `.bench/ref-venv`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = Path(__file__).resolve().parent / "workload.py"
REF_VENV = REPO / ".bench" / "ref-venv"
REF_VERSION = "0.4.1"
# Its Redis and Postgres stores import these lazily; the venv needs them to use them.
REF_REQUIREMENTS = (f"livingai=={REF_VERSION}", "redis", "asyncpg")
BUDGET_MS = 50.0
TIERS = ("single", "production", "hyperscale")
SHAPES = ("published", "realistic")
STORES = ("sqlite", "redis", "postgres", "tiered")
SERVER_STORES = ("redis", "postgres", "tiered")
OURS_CLASSES = {  # what this repo's livingai must export to run each store
    "sqlite": ("SQLiteStore",),
    "redis": ("RedisStore",),
    "postgres": ("PostgresStore",),
    "tiered": ("TieredStore", "RedisStore", "PostgresStore"),
}
# What the reference venv must import to use each store; None: 0.4.1 has no such store.
REF_MODULES: dict[str, str | None] = {
    "sqlite": "livingai.storage",
    "redis": "livingai.stores.redis",
    "postgres": "livingai.stores.postgres",
    "tiered": None,
}
REF_POOL = 1000  # "reference (pool 1000)": its Redis store with a larger connection pool

REDIS_URL = os.environ.get("LIVINGAI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get(
    "LIVINGAI_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
# The reference's Redis keys have fixed names (lai:n:*, lai:c:*, lai:e:*), so it gets a
# database number of its own, emptied before and after its runs.
REF_REDIS_DB = int(os.environ.get("LIVINGAI_BENCH_REF_REDIS_DB", "15"))
REF_REDIS_KEY_PREFIX = b"lai:"
SERVER_TIMEOUT_S = 30.0


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
    durable_timeout_s: float


FULL = {
    "single": Tier("single", 1, 2000, 50_000, 50_000, 2000, 600.0, 300.0),
    "production": Tier("production", 50, 20, 5_000, 100_000, 0, 600.0, 300.0),
    "hyperscale": Tier("hyperscale", 150, 10, 793_000, 793_000, 0, 1200.0, 600.0),
}
QUICK = {
    "single": Tier("single", 1, 20, 50_000, 50_000, 20, 120.0, 60.0),
    "production": Tier("production", 5, 3, 5_000, 100_000, 0, 120.0, 60.0),
    "hyperscale": Tier("hyperscale", 5, 3, 793_000, 793_000, 0, 120.0, 60.0),
}
VERIFY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Variant:
    """One column of systems: ours, the reference, or the reference with a bigger pool."""

    system: str  # the label in the table
    api: str  # "ours" or "reference"
    python: Path
    max_connections: int | None = None


def split_choices(value: str, allowed: Sequence[str]) -> list[str]:
    """A comma-separated choice list, validated, in the order given."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown or not items:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}; got {value!r}")
    return list(dict.fromkeys(items))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="livingai checkpoint benchmarks: this repo side by side with 0.4.1, "
        "on every store.",
    )
    parser.add_argument(
        "--tiers",
        type=lambda v: split_choices(v, TIERS),
        default=list(TIERS),
        help="comma-separated: single,production,hyperscale (default: all)",
    )
    parser.add_argument(
        "--shapes",
        type=lambda v: split_choices(v, SHAPES),
        default=list(SHAPES),
        help="comma-separated: published,realistic (default: both)",
    )
    add_stores_option(parser)
    parser.add_argument("--no-reference", action="store_true", help="run ours only")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    return parser.parse_args(argv)


# -- the reference virtualenv ------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def probe(python: Path, code: str) -> bool:
    """Whether `code` runs cleanly under `python` (outside the repo, so ours is not found)."""
    if not python.exists():
        return False
    try:
        done = subprocess.run(
            [str(python), "-c", code], capture_output=True, timeout=60, cwd=tempfile.gettempdir()
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def ensure_venv(
    venv: Path, requirements: Sequence[str], complete: Callable[[Path], bool]
) -> tuple[Path | None, str]:
    """A baseline's own virtualenv: made and filled (`pip install` of `requirements`) on
    first use, reused while `complete(python)` holds. Returns its python and "reused" or
    "set up"; or None and why not (no network, say)."""
    python = venv_python(venv)
    if complete(python):
        return python, "reused"
    steps = [[str(python), "-m", "pip", "install", "--quiet", *requirements]]
    if not python.exists():
        steps.insert(0, [sys.executable, "-m", "venv", str(venv)])
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(step[:4])} failed: {exc}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, f"{' '.join(step[:4])} failed: {' | '.join(tail)}"
    if not complete(python):
        return None, f"{' '.join(requirements)} installed into {venv} but does not import"
    return python, "set up"


def _reference_complete(python: Path) -> bool:
    return probe(
        python,
        f"import livingai, redis.asyncio, asyncpg, sys; "
        f"sys.exit(livingai.__version__ != {REF_VERSION!r})",
    )


def ensure_reference(venv: Path = REF_VENV) -> tuple[Path | None, str]:
    """The reference's python, creating the venv or adding what it lacks (redis, asyncpg);
    or None and why not."""
    python, how = ensure_venv(venv, REF_REQUIREMENTS, _reference_complete)
    if python is None:
        return None, how
    return python, f"{how} {venv} with {' '.join(REF_REQUIREMENTS)}"


# -- the servers ------------------------------------------------------------------------


def redact(url: str) -> str:
    """A server URL without its password, for output."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def with_redis_db(url: str, db: int) -> str:
    """The same Redis server, another database number."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"]
    return urlunsplit(parts._replace(path=f"/{db}", query=urlencode(query)))


def redis_db_of(url: str) -> int:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    path = parts.path.strip("/")
    return int(query.get("db") or path or 0)


def with_database(dsn: str, database: str) -> str:
    """The same Postgres server, another database (URL DSNs only: asyncpg needs a URL)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"need a postgresql:// URL, got {redact(dsn)!r}")
    return urlunsplit(parts._replace(path=f"/{database}"))


def with_search_path(dsn: str, schema: str) -> str:
    """The same database with `search_path` set (asyncpg passes unknown query
    parameters to the server as settings)."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    query.append(("search_path", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


def redis_client(url: str) -> Any:
    redis = importlib.import_module("redis")
    return redis.Redis.from_url(url, socket_timeout=SERVER_TIMEOUT_S, socket_connect_timeout=5.0)


def postgres_connection(dsn: str) -> Any:
    psycopg = importlib.import_module("psycopg")
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    # Bounded: a lock held by a killed child's session cannot hang the cleanup.
    conn.execute("SET lock_timeout = '30s'")
    conn.execute("SET statement_timeout = '120s'")
    return conn


def sql_with_names(template: str, *names: str) -> Any:
    sql = importlib.import_module("psycopg.sql")
    return sql.SQL(template).format(*(sql.Identifier(name) for name in names))


def server_problem(kind: str) -> str | None:
    """Why the Redis or Postgres server cannot be used, or None."""
    try:
        if kind == "redis":
            client = redis_client(REDIS_URL)
            try:
                client.ping()
            finally:
                client.close()
        else:
            with postgres_connection(POSTGRES_DSN) as conn:
                conn.execute("SELECT 1")
    except ImportError as exc:
        return f"the runner needs {exc.name!r}: pip install -e '.[test]'"
    except Exception as exc:
        name = "Redis" if kind == "redis" else "PostgreSQL"
        url = REDIS_URL if kind == "redis" else POSTGRES_DSN
        return f"{name} not reachable at {redact(url)}: {type(exc).__name__}: {exc}"
    return None


def delete_redis_prefix(url: str, prefix: str) -> None:
    client = redis_client(url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


def _redis_bytes(url: str, match: str) -> int:
    """What Redis says the matching keys take in memory (MEMORY USAGE, summed)."""
    client = redis_client(url)
    try:
        return sum(
            int(client.memory_usage(key) or 0) for key in client.scan_iter(match=match, count=1000)
        )
    finally:
        client.close()


def postgres_bytes(dsn: str, schema: str) -> int:
    """Tables of the schema with their indexes and TOAST (pg_total_relation_size)."""
    with postgres_connection(dsn) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
            (schema,),
        ).fetchone()
    return int(row[0]) if row else 0


def _claim_reference_redis_db(url: str) -> None:
    """Empty the reference's Redis database, refusing if it holds anyone else's keys."""
    if redis_db_of(url) == redis_db_of(REDIS_URL):
        raise RuntimeError(
            f"the reference's Redis database {redis_db_of(url)} is ours too; set "
            "LIVINGAI_BENCH_REF_REDIS_DB to another number"
        )
    client = redis_client(url)
    try:
        for key in client.scan_iter(count=1000):
            if not key.startswith(REF_REDIS_KEY_PREFIX):
                raise RuntimeError(
                    f"Redis database {redis_db_of(url)} holds {key!r}, not a 0.4.1 key: "
                    "not emptying it; set LIVINGAI_BENCH_REF_REDIS_DB to a free database"
                )
        client.flushdb()
    finally:
        client.close()


def _flush_redis_db(url: str) -> None:
    client = redis_client(url)
    try:
        client.flushdb()
    finally:
        client.close()


@dataclass
class Place:
    """Where one run's store lives: the child's store spec and how to measure its size."""

    spec: dict[str, Any]
    measures: list[Callable[[], int]] = field(default_factory=list)

    def server_bytes(self) -> int | None:
        return sum(measure() for measure in self.measures) if self.measures else None


@contextlib.contextmanager
def provision(api: str, store: str, workdir: Path, max_connections: int | None) -> Iterator[Place]:
    """A store of this run's own, removed afterwards (on errors and timeouts too)."""
    token = uuid.uuid4().hex[:12]
    with contextlib.ExitStack() as cleanup:
        place = Place({"kind": store})
        if store == "sqlite":
            place.spec["db"] = str(workdir / "bench.db")
        elif api == "ours":
            if store in ("redis", "tiered"):
                prefix = f"livingai-bench-{token}"  # the store adds its own ":"
                place.spec.update(redis_url=REDIS_URL, redis_prefix=prefix)
                cleanup.callback(delete_redis_prefix, REDIS_URL, prefix)
                place.measures.append(lambda: _redis_bytes(REDIS_URL, f"{prefix}*"))
            if store in ("postgres", "tiered"):
                schema = f"livingai_bench_{token}"
                place.spec.update(postgres_dsn=POSTGRES_DSN, postgres_schema=schema)
                cleanup.callback(drop_schema, POSTGRES_DSN, schema)
                place.measures.append(lambda: postgres_bytes(POSTGRES_DSN, schema))
        elif store == "redis":
            url = with_redis_db(REDIS_URL, REF_REDIS_DB)
            _claim_reference_redis_db(url)
            cleanup.callback(_flush_redis_db, url)
            place.spec.update(redis_url=url, max_connections=max_connections)
            place.measures.append(lambda: _redis_bytes(url, "lai:*"))
        elif store == "postgres":
            dsn, schema = _reference_database(token, cleanup)
            place.spec.update(postgres_dsn=dsn)
            place.measures.append(lambda: postgres_bytes(dsn, schema))
        else:
            raise ValueError(f"the reference has no {store!r} store")
        yield place


def drop_schema(dsn: str, schema: str) -> None:
    with postgres_connection(dsn) as conn:
        conn.execute(sql_with_names("DROP SCHEMA IF EXISTS {} CASCADE", schema))


def own_database(name: str, cleanup: contextlib.ExitStack) -> tuple[str, str | None]:
    """A database `name` of its own on the benchmark server, for a baseline whose table
    names are fixed, dropped WITH (FORCE) afterwards: (its DSN, None). Where creating
    databases is not allowed, a schema `name` in the configured database, dropped
    CASCADE afterwards: (the configured DSN, the schema)."""
    psycopg = importlib.import_module("psycopg")
    with postgres_connection(POSTGRES_DSN) as conn:
        try:
            conn.execute(sql_with_names("CREATE DATABASE {}", name))
        except psycopg.errors.InsufficientPrivilege:
            conn.execute(sql_with_names("CREATE SCHEMA {}", name))
            cleanup.callback(drop_schema, POSTGRES_DSN, name)
            return POSTGRES_DSN, name
    cleanup.callback(drop_database, name)
    return with_database(POSTGRES_DSN, name), None


def _reference_database(token: str, cleanup: contextlib.ExitStack) -> tuple[str, str]:
    """A database of its own for the reference's fixed table `lai_nodes` (or a schema,
    reached via search_path). Returns the reference's DSN and the schema its table
    lands in."""
    dsn, schema = own_database(f"livingai_bench_ref_{token}", cleanup)
    if schema is not None:
        return with_search_path(dsn, schema), schema
    return dsn, "public"


def drop_database(name: str) -> None:
    with postgres_connection(POSTGRES_DSN) as conn:
        conn.execute(sql_with_names("DROP DATABASE IF EXISTS {} WITH (FORCE)", name))


# -- one run -------------------------------------------------------------------------------


def run_child(
    python: Path, args: dict[str, Any], timeout: float, cwd: Path, workload: Path = WORKLOAD
) -> dict[str, Any]:
    """Run a workload file with `python`; its last stdout line is its JSON result. The
    child gets none of this process's import paths, nor DBOS's settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME") and not k.startswith("DBOS_")
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    try:
        done = subprocess.run(
            [str(python), str(workload), json.dumps(args)],
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


def run_one(variant: Variant, store: str, tier: Tier, shape: str, seed: int) -> dict[str, Any]:
    """One (system, store, tier, shape): a run child, then a verify child, on a fresh
    store that is removed afterwards."""
    with contextlib.suppress(AttributeError):
        os.sync()  # the previous run's dirty pages should not slow this one down
    workdir = Path(tempfile.mkdtemp(prefix=f"livingai-bench-{variant.api}-"))
    ids_path = workdir / "ids.json"
    row: dict[str, Any] = {
        "system": variant.system,
        "store": store,
        "tier": tier.name,
        "shape": shape,
    }
    started = time.perf_counter()
    try:
        with provision(variant.api, store, workdir, variant.max_connections) as place:
            row["where"] = {
                k: redact(v) if k in ("redis_url", "postgres_dsn") else v
                for k, v in place.spec.items()
                if k != "kind"
            }
            args = {
                "mode": "run",
                "store": place.spec,
                "shape": shape,
                "agents": tier.agents,
                "saves": tier.saves,
                "min_size": tier.min_size,
                "max_size": tier.max_size,
                "reads": tier.reads,
                "budget_ms": BUDGET_MS,
                "durable_timeout_s": tier.durable_timeout_s,
                "seed": seed,
                "ids_path": str(ids_path),
            }
            row.update(run_child(variant.python, args, tier.timeout_s, workdir))
            if "error" not in row:
                check = run_child(
                    variant.python,
                    {"mode": "verify", "store": place.spec, "ids_path": str(ids_path)},
                    VERIFY_TIMEOUT_S,
                    workdir,
                )
                if "error" in check:
                    row["error"] = f"verify: {check['error']}"
                else:
                    row.update(check)
                    size = place.server_bytes()
                    if size is not None:
                        row["server_bytes"] = size
    except Exception as exc:  # a server refused the set-up or the cleanup
        row["error"] = f"store set-up/clean-up: {type(exc).__name__}: {exc}"
    finally:
        row["wall_s"] = time.perf_counter() - started
        shutil.rmtree(workdir, ignore_errors=True)
    expected = REF_VERSION if variant.api == "reference" else None
    if "version" in row and expected is not None and row["version"] != expected:
        row["error"] = f"expected livingai {expected}, the child imported {row['version']}"
    return row


# -- what can run --------------------------------------------------------------------------


def ours_problem(store: str) -> str | None:
    """Why this repo's livingai cannot run this store (its class is not there yet)."""
    livingai = importlib.import_module("livingai")
    missing = [name for name in OURS_CLASSES[store] if not hasattr(livingai, name)]
    if missing:
        return f"not available: livingai {livingai.__version__} has no {', '.join(missing)} (yet)"
    return None


def reference_problem(python: Path, store: str) -> str | None:
    module = REF_MODULES[store]
    if module is None:
        return f"n/a: {REF_VERSION} has no {store} store"
    if not probe(python, f"import {module}"):
        return f"not available: the reference venv cannot import {module}"
    return None


def plan(
    stores: Sequence[str], reference: Path | None, explicit: bool
) -> tuple[list[tuple[str, Variant, str | None]], list[str]]:
    """Every (store, variant) in table order, each with why it cannot run (or None);
    and the problems that make the run fail (stores asked for by name that cannot run)."""
    servers = {kind: server_problem(kind) for kind in ("redis", "postgres")}
    ours = Variant("ours", "ours", Path(sys.executable))
    out: list[tuple[str, Variant, str | None]] = []
    failures: list[str] = []
    for store in stores:
        needs = {"redis": ["redis"], "postgres": ["postgres"], "tiered": ["redis", "postgres"]}
        server = next(
            (f"not available: {p}" for k in needs.get(store, []) if (p := servers[k])), None
        )
        if reference is not None:
            ref = Variant("reference", "reference", reference)
            variants = [ref]
            if store == "redis":
                variants.append(
                    Variant(f"reference (pool {REF_POOL})", "reference", reference, REF_POOL)
                )
            problem = reference_problem(reference, store) or server
            out.extend((store, variant, problem) for variant in variants)
        problem = ours_problem(store) or server
        out.append((store, ours, problem))
        if problem and explicit:
            failures.append(f"{store} (ours): {problem}")
    return out, failures


# -- report --------------------------------------------------------------------------------

_COLUMNS = (
    ("tier", "<", 10),
    ("shape", "<", 9),
    ("store", "<", 8),
    ("system", "<", 21),
    ("saves", ">", 5),
    ("SLA %", ">", 6),
    ("p50 ms", ">", 7),
    ("p99 ms", ">", 7),
    ("max ms", ">", 8),
    ("stall ms", ">", 8),
    ("durable s", ">", 9),
    ("cold s", ">", 6),
    ("data MB", ">", 8),
    ("lost", ">", 5),
)


Columns = Sequence[tuple[str, str, int]]  # (heading, alignment, width) of a table's columns


def padded(columns: Columns, cells: Sequence[str]) -> str:
    """Cells padded to their columns; a short list (a row that did not run) fills the
    first few."""
    pairs = zip(cells, columns, strict=False)
    return "  ".join(f"{cell:{align}{width}}" for cell, (_, align, width) in pairs)


def _line(cells: Sequence[str]) -> str:
    return padded(_COLUMNS, cells)


def _data_bytes(row: dict[str, Any]) -> int | None:
    """SQLite: the files on disk; servers: what the server reports for the run's data."""
    value = row.get("disk_bytes", row.get("server_bytes"))
    return None if value is None else int(value)


def _lost_cell(row: dict[str, Any]) -> str:
    if "cold_lost" in row:
        return f"{row['lost']} (cold {row['cold_lost']})"
    return str(row["lost"])


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The main table, one line per run; a run that failed or could not run says why."""
    out = [_line([name for name, _, _ in _COLUMNS]), _line(["-" * w for _, _, w in _COLUMNS])]
    for row in rows:
        head = [row["tier"], row["shape"], row["store"], row["system"]]
        if "skipped" in row:
            out.append(_line(head) + "  " + str(row["skipped"]))
            continue
        if "error" in row:
            out.append(_line(head) + "  ERROR: " + str(row["error"]))
            continue
        ms = row["save_ms"]
        size = _data_bytes(row)
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
                    f"{row['cold_s']:.2f}" if "cold_s" in row else "-",
                    "-" if size is None else f"{size / 1e6:.1f}",
                    _lost_cell(row),
                ]
            )
        )
    return "\n".join(out)


def _measured(row: dict[str, Any]) -> bool:
    return "error" not in row and "skipped" not in row


def reads_table(rows: Sequence[dict[str, Any]]) -> str:
    """Read latencies of the single tier: hot (cached) and cold (fresh engine)."""
    out = []
    for row in rows:
        if not _measured(row) or "hot_read_ms" not in row:
            continue
        hot, cold = row["hot_read_ms"], row["cold_read_ms"]
        out.append(
            f"  {row['shape']:<9}  {row['store']:<8}  {row['system']:<21}  "
            f"hot p50 {hot['p50']:.3f} ms  p99 {hot['p99']:.3f} ms  |  "
            f"cold p50 {cold['p50']:.3f} ms  p99 {cold['p99']:.3f} ms  "
            f"(misses: hot {row['hot_read_misses']}, cold {row['cold_read_misses']})"
        )
    return "\n".join(["single-agent reads (engine.load):", *out]) if out else ""


def ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """reference / ours per (tier, shape, store) and reference variant, from this run."""
    found: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        if _measured(row):
            key = (row["tier"], row["shape"], row["store"])
            found.setdefault(key, {})[row["system"]] = row
    out = []
    for (tier, shape, store), systems in found.items():
        ours = systems.get("ours")
        if ours is None:
            continue
        for system, ref in systems.items():
            if system == "ours":
                continue
            out.append(
                {
                    "tier": tier,
                    "shape": shape,
                    "store": store,
                    "reference": system,
                    "durable_ratio": ref["durable_s"] / max(ours["durable_s"], 1e-9),
                    "p99_ratio": ref["save_ms"]["p99"] / max(ours["save_ms"]["p99"], 1e-9),
                }
            )
    return out


def _checks(row: dict[str, Any], ratio: dict[str, Any] | None) -> list[tuple[str, bool]]:
    """The targets for one of our runs. SQLite keeps its original targets; the server
    stores: production >= 99.9% in budget, p99 <= 25 ms, max <= budget + 10 ms, all
    durable; hyperscale: all durable within 10 s, max <= budget + 10 ms, stall <= 20 ms."""
    limit = BUDGET_MS + 10.0
    ms = row["save_ms"]
    lost = f"lost {row['lost']}" + (f", cold {row['cold_lost']}" if "cold_lost" in row else "")
    all_there = row["lost"] == 0 and row.get("cold_lost", 0) == 0
    checks: list[tuple[str, bool]] = [
        (f"max save {ms['max']:.1f} <= {limit:.0f} ms", ms["max"] <= limit),
    ]
    server = row["store"] != "sqlite"
    if row["tier"] == "production":
        sla = 99.9 if server else 99.0
        checks += [
            (f"all {row['saves']} durable ({lost})", all_there),
            (f"SLA {row['sla_pct']:.1f}% >= {sla:g}%", row["sla_pct"] >= sla),
            (f"p99 {ms['p99']:.1f} <= 25 ms", ms["p99"] <= 25.0),
        ]
        return checks
    checks.append((f"stall {row['max_stall_ms']:.1f} <= 20 ms", row["max_stall_ms"] <= 20.0))
    if server:
        checks.append(
            (
                f"all {row['saves']} durable within 10 s ({row['durable_s']:.2f} s, {lost})",
                all_there and row["durable_s"] <= 10.0,
            )
        )
    else:
        checks.append((f"all {row['saves']} durable ({lost})", all_there))
        if ratio is not None:
            checks.append(
                (
                    f"durable {ratio['durable_ratio']:.1f}x faster >= 5x",
                    ratio["durable_ratio"] >= 5.0,
                )
            )
    return checks


def targets(rows: Sequence[dict[str, Any]], ratio_rows: Sequence[dict[str, Any]]) -> list[str]:
    """Our rows checked against the stated targets: PASS or FAIL with the number."""
    by_key = {
        (r["tier"], r["shape"], r["store"]): r for r in ratio_rows if r["reference"] == "reference"
    }
    out = []
    for row in rows:
        if row["system"] != "ours" or row["tier"] == "single" or "skipped" in row:
            continue
        where = f"  {row['tier']:<10} {row['shape']:<9} {row['store']:<8}"
        if "error" in row:
            out.append(f"{where}  FAIL the run: {row['error']}")
            continue
        ratio = by_key.get((row["tier"], row["shape"], row["store"]))
        text = ", ".join(f"{'PASS' if ok else 'FAIL'} {what}" for what, ok in _checks(row, ratio))
        out.append(f"{where}  {text}")
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
    """Run the selected matrix, print the table, optionally write JSON.

    Exit status 1 when one of our runs failed or a store named in --stores could not
    run; the reference failing (e.g. running out of Redis connections) is a result.
    """
    opts = parse_args(argv)
    tiers = QUICK if opts.quick else FULL
    reference: Path | None = None
    reference_note = "skipped (--no-reference)"
    if not opts.no_reference:
        reference, reference_note = ensure_reference()
        if reference is None:
            print(f"NOTE: reference unavailable, running ours only: {reference_note}", flush=True)
    stores = opts.stores or list(STORES)
    matrix, failures = plan(stores, reference, explicit=opts.stores is not None)
    revision = _git_revision()
    print(f"ours: {revision}; reference: {reference_note}", flush=True)
    print(
        f"servers: Redis {redact(REDIS_URL)} (reference: database {REF_REDIS_DB}), "
        f"PostgreSQL {redact(POSTGRES_DSN)}",
        flush=True,
    )
    for store, variant, problem in matrix:
        if problem:
            print(f"  {store:<8} {variant.system:<21} {problem}", flush=True)

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for tier_name in opts.tiers:
        tier = tiers[tier_name]
        for seed, shape in enumerate(opts.shapes, start=1):
            for store, variant, problem in matrix:
                head = {
                    "system": variant.system,
                    "store": store,
                    "tier": tier_name,
                    "shape": shape,
                }
                if problem:
                    rows.append({**head, "skipped": problem})
                    continue
                label = f"{tier_name:<10} {shape:<9} {store:<8} {variant.system:<21}"
                print(f"running {label} ...", end="", flush=True)
                row = run_one(variant, store, tier, shape, seed)
                status = f" error: {row['error']}" if "error" in row else ""
                print(f" {row.get('wall_s', 0.0):.1f}s{status}", flush=True)
                rows.append(row)

    ratio_rows = ratios(rows)
    print()
    print(table(rows))
    for ratio in ratio_rows:
        print(
            f"{ratio['tier']} / {ratio['shape']} / {ratio['store']}: {ratio['reference']}/ours "
            f"time-to-durable {ratio['durable_ratio']:.1f}x, "
            f"p99 save latency {ratio['p99_ratio']:.1f}x"
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
    failures += [
        f"{row['tier']} / {row['shape']} / {row['store']} (ours): {row['error']}"
        for row in rows
        if row["system"] == "ours" and "error" in row
    ]
    if failures:
        print()
        print("FAILED:")
        print("\n".join(f"  {failure}" for failure in failures))
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
                "stores": stores,
                "servers": {
                    "redis": redact(REDIS_URL),
                    "reference_redis_db": REF_REDIS_DB,
                    "postgres": redact(POSTGRES_DSN),
                },
            },
            "runs": rows,
            "ratios": ratio_rows,
            "targets": checked,
            "failures": failures,
        }
        opts.json.write_text(json.dumps(report, indent=2))
    return 1 if failures else 0


# -- shared by the benchmark commands ----------------------------------------------------------


class Warnings(logging.Handler):
    """The stores' warnings (Redis without persistence, say), kept to print once after
    the table instead of in the middle of the progress lines."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: dict[str, None] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.seen[record.getMessage()] = None


@contextlib.contextmanager
def kept_warnings() -> Iterator[Warnings]:
    logger = logging.getLogger("livingai")
    handler = Warnings()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def positive_int(value: str) -> int:
    """An argparse type: a whole number of at least 1 (1_000_000 and 1,000,000 too)."""
    number = int(value.replace("_", "").replace(",", ""))
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value!r}")
    return number


def store_problem(
    kind: str, servers_needed: Sequence[str], servers: Mapping[str, str | None]
) -> str | None:
    """Why a store of ours cannot run here: its class is missing, or a server it needs
    is down (`servers`: server_problem of each)."""
    missing = ours_problem(kind)
    if missing:
        return missing
    return next((f"not available: {p}" for k in servers_needed if (p := servers.get(k))), None)


def add_stores_option(parser: argparse.ArgumentParser, whose: str = "") -> None:
    """--stores, as every benchmark takes it: some of STORES, comma-separated."""
    parser.add_argument(
        "--stores",
        type=lambda v: split_choices(v, STORES),
        default=None,
        help=f"{whose}comma-separated: sqlite,redis,postgres,tiered (default: every one "
        "available; the others get a 'not available' row)",
    )


# -- the targets against DBOS (benchmarks.openai_agents, benchmarks.pydantic_ai) ---------------

DBOS_RUNS_RATIO = 5.0  # at least this many times DBOS's runs per second
DBOS_P99_RATIO = 10.0  # at most this fraction (1/x) of DBOS's per-turn p99


def measured(row: Mapping[str, Any]) -> bool:
    return "error" not in row and "skipped" not in row


def why_not(row: Mapping[str, Any]) -> str:
    return str(row.get("skipped") or row.get("error") or "")


def against_dbos(
    row: Mapping[str, Any], dbos: Mapping[str, Any] | None
) -> list[tuple[str, bool | None]]:
    """Ours (`row`: runs_per_s, turn_ms p99) against DBOS's row on the same store: the
    runs/s and p99 targets, each (what was measured, met?; None: not measured)."""
    if dbos is None or not measured(dbos):
        why = "no DBOS row" if dbos is None else f"DBOS did not run: {why_not(dbos)}"
        return [(f"vs DBOS: {why}", None)]
    ours_ms, dbos_ms = row["turn_ms"], dbos["turn_ms"]
    runs_ratio = row["runs_per_s"] / max(dbos["runs_per_s"], 1e-9)
    p99_ratio = dbos_ms["p99"] / max(ours_ms["p99"], 1e-9)
    return [
        (
            f"runs/s {row['runs_per_s']:.1f} = {runs_ratio:.2f}x DBOS's "
            f"{dbos['runs_per_s']:.1f} (>= {DBOS_RUNS_RATIO:g}x)",
            runs_ratio >= DBOS_RUNS_RATIO,
        ),
        (
            f"p99 {ours_ms['p99']:.3f} ms = DBOS's {dbos_ms['p99']:.3f} / {p99_ratio:.2f} "
            f"(<= 1/{DBOS_P99_RATIO:g})",
            p99_ratio >= DBOS_P99_RATIO,
        ),
    ]
