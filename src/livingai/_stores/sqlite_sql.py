"""SQLite schema, migrations and queries (no I/O here).

Layout: `nodes` holds one row per node version; its rowid `seq` is the global append
order. `executions` holds one row per execution, its rowid giving first-seen order.
`leases` holds one row per execution ever leased: who holds it, until when (seconds
since the epoch, by this machine's clock: every process on one file shares it), and the
fencing token, which only grows.

The executions' index (migration 5, listing.py): each `executions` row also holds when
the execution started (its first version's created_at) and its run record's agent and
status, written in the transaction that appends the versions; partial and composite
indexes answer the open runs and each page of the listing without a scan. Rows from
before migration 5 have started_at NULL until BACKFILL fills them, a chunk a transaction,
when the store first opens the file (resumable: what is filled stays filled).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import TypeVar

from .._core.model import RECORD_COLUMNS

T = TypeVar("T")

# Each entry upgrades the schema by one version; its index + 1 is the version it makes.
# Never edit a released entry: append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE nodes (
        seq INTEGER PRIMARY KEY,
        version_id TEXT NOT NULL UNIQUE,
        node_id TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        parent_id TEXT,
        type TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        completed_at TEXT,
        body TEXT NOT NULL,
        checkpoint BLOB
    );
    CREATE INDEX nodes_by_node ON nodes(node_id);
    CREATE INDEX nodes_by_execution ON nodes(execution_id, node_id);
    CREATE INDEX checkpoints_by_execution ON nodes(execution_id) WHERE checkpoint IS NOT NULL;
    CREATE TABLE executions (execution_id TEXT PRIMARY KEY);
    """,
    # 2: leases, one row an execution, kept when released so that tokens never repeat.
    """
    CREATE TABLE leases (
        execution_id TEXT PRIMARY KEY,
        worker_id TEXT NOT NULL,
        token INTEGER NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    # 3: the model and usage of model calls, as columns, for costs added up in SQL.
    """
    ALTER TABLE nodes ADD COLUMN model TEXT;
    ALTER TABLE nodes ADD COLUMN prompt_tokens INTEGER;
    ALTER TABLE nodes ADD COLUMN completion_tokens INTEGER;
    ALTER TABLE nodes ADD COLUMN cost REAL;
    CREATE INDEX usage_by_time ON nodes(created_at, model) WHERE model IS NOT NULL
        OR prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL OR cost IS NOT NULL;
    """,
    # 4: usage added up from indexes alone, never from the rows (a row holds its body and
    # state before the usage columns), in the order the sums are grouped in: no sort.
    """
    DROP INDEX usage_by_time;
    CREATE INDEX usage_by_day ON nodes(substr(created_at, 1, 10), model, created_at,
        execution_id, prompt_tokens, completion_tokens, cost) WHERE model IS NOT NULL
        OR prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL OR cost IS NOT NULL;
    CREATE INDEX usage_by_execution ON nodes(execution_id, created_at, model,
        prompt_tokens, completion_tokens, cost) WHERE model IS NOT NULL
        OR prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL OR cost IS NOT NULL;
    """,
    # 5: the executions' index: when each started, its run's agent and status.
    """
    ALTER TABLE executions ADD COLUMN started_at TEXT;
    ALTER TABLE executions ADD COLUMN agent TEXT NOT NULL DEFAULT '';
    ALTER TABLE executions ADD COLUMN status TEXT;
    CREATE INDEX executions_by_start ON executions(started_at, execution_id);
    CREATE INDEX executions_by_status ON executions(status, started_at, execution_id);
    CREATE INDEX executions_by_agent ON executions(agent, started_at, execution_id);
    CREATE INDEX executions_by_agent_status
        ON executions(agent, status, started_at, execution_id);
    CREATE INDEX open_runs ON executions(started_at, execution_id)
        WHERE status IN ('PENDING', 'RUNNING');
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

_COLUMNS = ", ".join(RECORD_COLUMNS)

# Rows go in as multi-row INSERTs: one statement step per chunk, where executemany
# steps (and hands the GIL back and forth) once per row; within SQLite's oldest limit of
# 999 variables per statement.
ROWS_PER_INSERT = 999 // len(RECORD_COLUMNS)
ROWS_PER_INSERT_EXECUTIONS = 999 // 2


@functools.cache
def insert_nodes(rows: int) -> str:
    """A version sent twice (a retry after a lost acknowledgement) is stored once."""
    row = "(" + ", ".join("?" * len(RECORD_COLUMNS)) + ")"
    values = ", ".join([row] * rows)
    return f"INSERT OR IGNORE INTO nodes ({_COLUMNS}) VALUES {values}"


@functools.cache
def insert_executions(rows: int) -> str:
    """Parameters: each new execution's id and when it started."""
    values = ", ".join(["(?, ?)"] * rows)
    return f"INSERT OR IGNORE INTO executions (execution_id, started_at) VALUES {values}"


# Parameters: the run record's status and agent, the execution id.
INDEX_RUN = "UPDATE executions SET status = ?, agent = ? WHERE execution_id = ?"

# An execution's entry worked out from its rows (for the backfill, and after retention
# removed some of them), for the executions `_TARGET` names.
_ENTRY = """
    UPDATE executions SET
        started_at = (SELECT created_at FROM nodes AS n
                      WHERE n.execution_id = executions.execution_id ORDER BY seq LIMIT 1),
        status = (SELECT status FROM nodes AS n
                  WHERE n.node_id = executions.execution_id || '/run'
                  AND n.execution_id = executions.execution_id ORDER BY seq DESC LIMIT 1),
        agent = coalesce((SELECT CASE json_type(body, '$.metadata.agent')
                          WHEN 'text' THEN json_extract(body, '$.metadata.agent') END
                          FROM nodes AS n
                          WHERE n.node_id = executions.execution_id || '/run'
                          AND n.execution_id = executions.execution_id
                          ORDER BY seq DESC LIMIT 1), '')
    WHERE {target}
"""
BACKFILL_CHUNK = 1000  # executions a backfill transaction fills
BACKFILL = _ENTRY.format(
    target=f"rowid IN (SELECT rowid FROM executions WHERE started_at IS NULL "
    f"LIMIT {BACKFILL_CHUNK})"
)
REINDEX_EXECUTION = _ENTRY.format(target="execution_id = ?")  # parameter: the execution id
UNINDEXED = "SELECT 1 FROM executions WHERE started_at IS NULL LIMIT 1"  # left to backfill?

OPEN_RUNS = (
    "SELECT execution_id, started_at, agent, status FROM executions "
    "WHERE status IN ('PENDING', 'RUNNING') "
    "ORDER BY started_at, execution_id"
)


def page_sql(status: bool, agent: bool, since: bool, until: bool, after: bool) -> str:
    """A page of the listing, newest first; named parameters :status, :agent, :since,
    :until, :after_at and :after_id (the cursor's key), :n (the limit + 1)."""
    where = ["started_at IS NOT NULL"]
    if status:
        where.append("status = :status")
    if agent:
        where.append("agent = :agent")
    if since:
        where.append("started_at >= :since")
    if until:
        where.append("started_at < :until")
    if after:
        where.append("(started_at, execution_id) < (:after_at, :after_id)")
    return (
        "SELECT execution_id, started_at, agent, status FROM executions "
        f"WHERE {' AND '.join(where)} ORDER BY started_at DESC, execution_id DESC LIMIT :n"
    )


def chunked(rows: Sequence[T], size: int = ROWS_PER_INSERT) -> Iterator[Sequence[T]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


READ_NODE = f"SELECT {_COLUMNS} FROM nodes WHERE node_id = ? ORDER BY seq DESC LIMIT 1"
NODE_HISTORY = f"SELECT {_COLUMNS} FROM nodes WHERE node_id = ? ORDER BY seq"
LIST_NODES = f"""
    SELECT {", ".join("n." + c.strip() for c in _COLUMNS.split(","))}
    FROM nodes AS n
    JOIN (SELECT MIN(seq) AS first, MAX(seq) AS last FROM nodes
          WHERE execution_id = ? GROUP BY node_id) AS g ON n.seq = g.last
    ORDER BY g.first
"""
LIST_VERSIONS = f"SELECT {_COLUMNS} FROM nodes WHERE execution_id = ? ORDER BY seq"
LATEST_CHECKPOINT = f"""
    SELECT {_COLUMNS} FROM nodes
    WHERE execution_id = ? AND checkpoint IS NOT NULL ORDER BY seq DESC LIMIT 1
"""
LIST_EXECUTIONS = "SELECT execution_id FROM executions ORDER BY rowid"

READ_LEASE = "SELECT execution_id, worker_id, token, expires_at FROM leases WHERE execution_id = ?"
WRITE_LEASE = (
    "INSERT OR REPLACE INTO leases (execution_id, worker_id, token, expires_at) VALUES (?, ?, ?, ?)"
)
# Held (the token is the newest, not released), though it may have expired: see leases.py.
RENEW_LEASE = (
    "UPDATE leases SET expires_at = ? WHERE execution_id = ? AND token = ? AND expires_at > 0"
)
RELEASE_LEASE = "UPDATE leases SET expires_at = 0 WHERE execution_id = ? AND token = ?"
LIVE_LEASES = (
    "SELECT execution_id, worker_id, token, expires_at FROM leases WHERE expires_at > ? "
    "ORDER BY execution_id"
)

# Retention: the only statements that delete or change stored rows. The execution ids go
# in as one JSON array, so any number of them is one statement.
_NAMED = "execution_id IN (SELECT value FROM json_each(?))"
DELETE_NODES = f"DELETE FROM nodes WHERE {_NAMED}"
DELETE_EXECUTIONS = f"DELETE FROM executions WHERE {_NAMED}"
DELETE_LEASES = f"DELETE FROM leases WHERE {_NAMED}"
# Parameters: the execution id, its node ids as one JSON array (served by
# nodes_by_execution); then, to forget the execution once no version of it is left, the
# execution id twice.
DELETE_NAMED_NODES = (
    "DELETE FROM nodes WHERE execution_id = ? AND node_id IN (SELECT value FROM json_each(?))"
)
DELETE_EMPTY_EXECUTION = (
    "DELETE FROM executions WHERE execution_id = ? "
    "AND NOT EXISTS (SELECT 1 FROM nodes WHERE execution_id = ?)"
)
# Parameters: the execution id twice, then how many of the newest checkpoints to keep.
DROP_CHECKPOINTS = """
    UPDATE nodes SET checkpoint = NULL
    WHERE execution_id = ? AND checkpoint IS NOT NULL AND seq NOT IN (
        SELECT seq FROM nodes WHERE execution_id = ? AND checkpoint IS NOT NULL
        ORDER BY seq DESC LIMIT ?
    )
"""

HAS_USAGE = (
    "(model IS NOT NULL OR prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL "
    "OR cost IS NOT NULL)"
)
_DAY = "substr(created_at, 1, 10)"
_SUMS = (
    "count(*) AS n, coalesce(sum(prompt_tokens), 0) AS p, "
    "coalesce(sum(completion_tokens), 0) AS c, coalesce(sum(cost), 0.0) AS d"
)


def usage_query(by: str, executions: bool, since: bool, until: bool) -> str:
    """Sums grouped `by`, read from the usage indexes (migration 4); named parameters
    :ids (a JSON array), :since, :until. A bound's day comes first, so that usage_by_day
    is searched by day before each time is compared. "total" has no GROUP BY (SQLite
    sorts even for a constant key): it answers one row, of zeros when nothing matches."""
    where = [HAS_USAGE]
    if executions:
        where.append("execution_id IN (SELECT value FROM json_each(:ids))")
    if since:
        where.append(f"{_DAY} >= substr(:since, 1, 10) AND created_at >= :since")
    if until:
        where.append(f"{_DAY} <= substr(:until, 1, 10) AND created_at < :until")
    cond = " AND ".join(where)
    if by == "total":
        return f"SELECT 'total', {_SUMS} FROM nodes WHERE {cond}"
    if by == "model":  # by day and model first (the index's order), then by model
        return (
            f"SELECT coalesce(model, ''), sum(n), sum(p), sum(c), sum(d) FROM ("
            f"SELECT model, {_SUMS} FROM nodes WHERE {cond} GROUP BY {_DAY}, model"
            ") GROUP BY 1 ORDER BY 1"
        )
    key = _DAY if by == "day" else "execution_id"
    return f"SELECT {key}, {_SUMS} FROM nodes WHERE {cond} GROUP BY {key} ORDER BY 1"
