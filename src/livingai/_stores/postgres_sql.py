"""PostgreSQL schema, migrations, statements, batch columns and DSN masking (no I/O here).

Layout, inside the store's own schema (CREATE SCHEMA IF NOT EXISTS on first use):

- `nodes`: one row per node version. `seq` (an identity column) is the global append
  order; `version_id` is UNIQUE, so a batch sent again is stored once. The body is jsonb,
  so it can be queried (`body->'output'->>'k'`); jsonb re-formats the text (key order,
  whitespace, number spelling) but keeps the same JSON value. `created_at` and
  `completed_at` keep the exact ISO text the model produced.
- `executions`: one row per execution, `first_seq` giving first-seen order; since
  migration 5 also the executions' index (listing.py): when it started (its first
  version's created_at) and its run record's agent and status, written by the statement
  that appends the versions. Ids and times compare bytewise (COLLATE "C") in the index's
  order, as Python compares them. Rows from before migration 5 have started_at NULL until
  `backfill` fills them, a chunk a statement, whenever a connection opens (resumable).
- `schema_version`: one row, the number of MIGRATIONS applied.
- `leases`: one row per execution ever leased: holder, fencing token (only grows) and
  expiry in seconds since the epoch, by the server's clock.

Statements are templates with `{s}` standing for the quoted schema name; `Statements`
renders them once per schema.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._core.errors import ConfigError
from .._core.model import RECORD_COLUMNS, NodeRecord
from .._core.urls import mask_url, redact, url_secrets

# Each entry upgrades the schema by one version; its index + 1 is the version it makes.
# Every entry is a list of single statements. Never edit a released entry: append one.
MIGRATIONS: list[tuple[str | Callable[[str], str], ...]] = [
    (
        """
        CREATE TABLE {s}.nodes (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            version_id text NOT NULL UNIQUE,
            node_id text NOT NULL,
            execution_id text NOT NULL,
            parent_id text,
            type text NOT NULL,
            status text NOT NULL,
            created_at text NOT NULL,
            completed_at text,
            body jsonb NOT NULL,
            checkpoint bytea
        )
        """,
        # Blobs arrive compressed by the engine's codec: keep them out of line, and do
        # not have TOAST try to compress them again.
        "ALTER TABLE {s}.nodes ALTER COLUMN checkpoint SET STORAGE EXTERNAL",
        "CREATE INDEX nodes_by_node ON {s}.nodes (node_id, seq)",
        # INCLUDE node_id: list_nodes groups an execution's versions by node from the
        # index alone.
        "CREATE INDEX nodes_by_execution ON {s}.nodes (execution_id, seq) INCLUDE (node_id)",
        """
        CREATE INDEX checkpoints_by_execution ON {s}.nodes (execution_id, seq DESC)
        WHERE checkpoint IS NOT NULL
        """,
        """
        CREATE TABLE {s}.executions (
            execution_id text PRIMARY KEY,
            first_seq bigint NOT NULL
        )
        """,
        "CREATE INDEX executions_by_first_seq ON {s}.executions (first_seq)",
    ),
    # 2: leases, one row an execution, kept when released so that tokens never repeat.
    # expires_at is seconds since the epoch by the server's clock.
    (
        """
        CREATE TABLE {s}.leases (
            execution_id text PRIMARY KEY,
            worker_id text NOT NULL,
            token bigint NOT NULL,
            expires_at double precision NOT NULL
        )
        """,
    ),
    # 3: the model and usage of model calls, as columns, for costs added up in SQL.
    (
        """
        ALTER TABLE {s}.nodes ADD COLUMN model text, ADD COLUMN prompt_tokens bigint,
            ADD COLUMN completion_tokens bigint, ADD COLUMN cost double precision
        """,
        """
        CREATE INDEX usage_by_time ON {s}.nodes (created_at, model)
        WHERE model IS NOT NULL OR prompt_tokens IS NOT NULL
            OR completion_tokens IS NOT NULL OR cost IS NOT NULL
        """,
    ),
    # 4: statistics on the day, so that usage by day is planned as the few groups it is
    # (a hash), not as one group a row (a sort spilled to disk).
    # Statistics on an expression need PostgreSQL 14; an older server plans as before.
    (
        lambda s: only_from(
            140000,
            f"CREATE STATISTICS {s}.usage_days ON (substr(created_at, 1, 10)) FROM {s}.nodes",
        ),
    ),
    # 5: the executions' index: when each started, its run's agent and status.
    (
        """
        ALTER TABLE {s}.executions ADD COLUMN started_at text COLLATE "C",
            ADD COLUMN agent text COLLATE "C" NOT NULL DEFAULT '',
            ADD COLUMN status text COLLATE "C"
        """,
        """
        CREATE INDEX executions_by_start
            ON {s}.executions (started_at, (execution_id COLLATE "C"))
        """,
        """
        CREATE INDEX executions_by_status
            ON {s}.executions (status, started_at, (execution_id COLLATE "C"))
        """,
        """
        CREATE INDEX executions_by_agent
            ON {s}.executions (agent, started_at, (execution_id COLLATE "C"))
        """,
        """
        CREATE INDEX executions_by_agent_status
            ON {s}.executions (agent, status, started_at, (execution_id COLLATE "C"))
        """,
        """
        CREATE INDEX open_runs ON {s}.executions (started_at, (execution_id COLLATE "C"))
        WHERE status IN ('PENDING', 'RUNNING')
        """,
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)

# pg_advisory_lock(LOCK_CLASS, hashtext(schema)) serialises migrations of one schema
# across processes. It is a session lock, taken before the transaction that looks at the
# catalog begins: a transaction already open while it waited (as under a transaction
# lock) answers from a catalog cache that has not seen what the last holder committed,
# finds no schema_version and fails creating it. A hash collision between two schemas
# only makes them wait for each other.
LOCK_CLASS = 0x6C766169  # "lvai"

_COLUMNS = RECORD_COLUMNS
_KINDS = {
    "checkpoint": "bytea",
    "prompt_tokens": "bigint",
    "completion_tokens": "bigint",
    "cost": "double precision",
}
_TYPES = tuple(_KINDS.get(column, "text") for column in _COLUMNS)


def _select(alias: str = "") -> str:
    """The columns of a NodeRecord, in order; the body as text, not parsed."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(
        f"{prefix}body::text" if column == "body" else prefix + column for column in _COLUMNS
    )


def only_from(server_version: int, statement: str) -> str:
    """`statement`, run only by a server of at least `server_version` (as
    server_version_num gives it): a DO block, its text quoted as a literal whatever the
    schema's name holds."""
    body = (
        f"BEGIN IF current_setting('server_version_num')::int >= {server_version} "
        f"THEN EXECUTE {quote_literal(statement)}; END IF; END"
    )
    return f"DO {quote_literal(body)}"


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier; refuses names PostgreSQL would change or reject."""
    if not name or "\x00" in name:
        raise ConfigError(f"schema must be a non-empty name without NUL; got {name!r}")
    if len(name.encode("utf-8")) > 63:  # NAMEDATALEN - 1: longer names are truncated
        raise ConfigError(f"schema must be at most 63 bytes long; got {name!r}")
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Statements:
    """Every statement of the store, rendered for one schema."""

    schema: str
    schema_exists: str
    version_table_exists: str
    lock: str
    unlock: str
    create_schema: str
    create_version_table: str
    read_version: str
    write_version: str
    migrations: tuple[str, ...]  # each one script: its statements in one round trip
    append: str
    read_node: str
    node_history: str
    list_nodes: str
    list_versions: str
    latest_checkpoint: str
    list_executions: str
    append_fenced: str  # append's parameters after two arrays: execution ids, tokens
    acquire_lease: str
    lease_holder: str
    renew_lease: str
    release_lease: str
    live_leases: str
    delete_executions: str  # parameter: the execution ids, an array
    delete_nodes: str  # parameters: the execution id, its node ids (an array)
    drop_checkpoints: str  # parameters: the execution id, how many checkpoints to keep, the
    # execution id again
    open_runs: str
    unindexed: str  # is any execution from before the index left to backfill?
    backfill: str  # fills a chunk of them; how many
    reindex_execution: str  # parameter: the execution id (after retention removed rows)

    def page(self, status: bool, agent: bool, since: bool, until: bool, after: bool) -> str:
        """A page of the listing, newest first; parameters, in order: the status, the
        agent, the lower and upper bounds of started_at, the cursor's key (started_at,
        execution id), when each is asked for; then the limit + 1."""
        where = ["started_at IS NOT NULL"]
        if status:
            where.append("status = %s")
        if agent:
            where.append("agent = %s")
        if since:
            where.append("started_at >= %s")
        if until:
            where.append("started_at < %s")
        if after:
            where.append('(started_at, execution_id COLLATE "C") < (%s, %s)')
        return f"""
            SELECT execution_id, started_at, agent, status
            FROM {quote_ident(self.schema)}.executions WHERE {" AND ".join(where)}
            ORDER BY started_at DESC, execution_id COLLATE "C" DESC LIMIT %s
        """

    def usage(self, by: str, executions: bool, since: bool, until: bool) -> str:
        """Sums grouped `by`; parameters, in order: the execution ids (an array, when
        `executions`), the lower and upper bounds of created_at (when given)."""
        where = [_HAS_USAGE]
        if executions:
            where.append("execution_id = ANY(%s::text[])")
        if since:
            where.append("created_at >= %s")
        if until:
            where.append("created_at < %s")
        return f"""
            SELECT {_GROUP[by]}, count(*), coalesce(sum(prompt_tokens), 0)::bigint,
                   coalesce(sum(completion_tokens), 0)::bigint, coalesce(sum(cost), 0.0)
            FROM {quote_ident(self.schema)}.nodes WHERE {" AND ".join(where)}
            GROUP BY 1 ORDER BY 1
        """


@functools.cache
def statements(schema: str) -> Statements:
    s = quote_ident(schema)
    # %b: arrays go in binary format. In text format psycopg hex-escapes every blob on the
    # event loop (measured: 16 MB of checkpoints, 400 ms of stall against 36 ms).
    unnest = ", ".join(f"%b::{kind}[]" for kind in _TYPES)
    columns = ", ".join(_COLUMNS)
    values = ", ".join("body::jsonb" if c == "body" else c for c in _COLUMNS)
    now = "extract(epoch FROM clock_timestamp())"
    lease_columns = "execution_id, worker_id, token, expires_at"

    def append(fenced: bool) -> str:
        """One statement: rows in batch order, stored versions skipped, executions first
        seen get a row. Fenced, it first locks the leases named (FOR SHARE: a takeover
        waits for this statement) and stores nothing if one no longer has its token;
        it returns the execution ids at fault."""
        fence = f"""
            wanted AS (
                SELECT * FROM unnest(%s::text[], %s::bigint[]) AS w(execution_id, token)
            ), held AS (
                SELECT execution_id, token, expires_at FROM {s}.leases
                WHERE execution_id IN (SELECT execution_id FROM wanted) FOR SHARE
            ), lost AS (
                SELECT w.execution_id FROM wanted AS w LEFT JOIN held AS h USING (execution_id)
                WHERE h.token IS DISTINCT FROM w.token OR h.expires_at = 0
            ),"""
        return f"""
            WITH {fence if fenced else ""} batch AS (
                SELECT * FROM unnest({unnest}) WITH ORDINALITY
                    AS b({columns}, position)
            ), stored AS (
                INSERT INTO {s}.nodes ({columns})
                SELECT {values} FROM batch
                {"WHERE NOT EXISTS (SELECT 1 FROM lost)" if fenced else ""}
                ORDER BY position
                ON CONFLICT (version_id) DO NOTHING
                RETURNING execution_id, seq, created_at, {_RUN_STATUS}, {_RUN_AGENT}
            ), listed AS (
                INSERT INTO {s}.executions AS e (execution_id, first_seq, started_at, status, agent)
                SELECT execution_id, min(seq), (array_agg(created_at ORDER BY seq))[1],
                    (array_agg(run_status ORDER BY seq DESC)
                        FILTER (WHERE run_status IS NOT NULL))[1],
                    coalesce((array_agg(run_agent ORDER BY seq DESC)
                        FILTER (WHERE run_status IS NOT NULL))[1], '')
                FROM stored GROUP BY execution_id
                ORDER BY execution_id  -- the same lock order in every process: no deadlock
                ON CONFLICT (execution_id) DO UPDATE
                SET status = excluded.status, agent = excluded.agent
                WHERE excluded.status IS NOT NULL  -- the batch holds a run record
            )
            {"SELECT execution_id FROM lost" if fenced else "SELECT 1 WHERE false"}
        """

    return Statements(
        schema=schema,
        # Parameters, not text: to_regnamespace and to_regclass parse the quoted name.
        schema_exists="SELECT to_regnamespace(%s::text) IS NOT NULL",
        version_table_exists="SELECT to_regclass(%s::text) IS NOT NULL",
        lock="SELECT pg_advisory_lock(%s::integer, hashtext(%s::text))",
        unlock="SELECT pg_advisory_unlock(%s::integer, hashtext(%s::text))",
        # Only when missing: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the
        # database even when the schema is there (created beforehand by an administrator).
        create_schema=f"CREATE SCHEMA IF NOT EXISTS {s}",
        create_version_table=f"""
            CREATE TABLE {s}.schema_version (
                only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                version integer NOT NULL
            )
        """,
        read_version=f"SELECT version FROM {s}.schema_version",
        write_version=f"""
            INSERT INTO {s}.schema_version (version) VALUES (%s::integer)
            ON CONFLICT (only_row) DO UPDATE SET version = excluded.version
        """,
        migrations=tuple(
            ";\n".join(
                (statement(s) if callable(statement) else statement.format(s=s)).strip()
                for statement in migration
            )
            for migration in MIGRATIONS
        ),
        # One statement, so one round trip and one transaction even in autocommit (the
        # identity's nextval runs above the ordered subquery, so seq follows `position`).
        append=append(fenced=False),
        append_fenced=append(fenced=True),
        read_node=f"""
            SELECT {_select()} FROM {s}.nodes WHERE node_id = %s ORDER BY seq DESC LIMIT 1
        """,
        node_history=f"SELECT {_select()} FROM {s}.nodes WHERE node_id = %s ORDER BY seq",
        list_nodes=f"""
            SELECT {_select("n")}
            FROM (
                SELECT node_id, min(seq) AS first, max(seq) AS last
                FROM {s}.nodes WHERE execution_id = %s GROUP BY node_id
            ) AS g
            JOIN {s}.nodes AS n ON n.seq = g.last
            ORDER BY g.first
        """,
        list_versions=f"""
            SELECT {_select()} FROM {s}.nodes WHERE execution_id = %s ORDER BY seq
        """,
        # The highest seq with a checkpoint: served by the partial index
        # checkpoints_by_execution, however many versions the execution has.
        latest_checkpoint=f"""
            SELECT {_select()} FROM {s}.nodes
            WHERE execution_id = %s AND checkpoint IS NOT NULL
            ORDER BY seq DESC LIMIT 1
        """,
        list_executions=f"SELECT execution_id FROM {s}.executions ORDER BY first_seq",
        # Taken when free, expired, held by the same worker or by the one to take over
        # (last parameter: a worker known to be gone, or NULL); always with a new token.
        acquire_lease=f"""
            INSERT INTO {s}.leases AS l ({lease_columns})
            VALUES (%s, %s, 1, {now} + %s)
            ON CONFLICT (execution_id) DO UPDATE
            SET worker_id = excluded.worker_id, token = l.token + 1,
                expires_at = excluded.expires_at
            WHERE l.worker_id = excluded.worker_id OR l.expires_at <= {now}
                OR l.worker_id = %s::text
            RETURNING {lease_columns}
        """,
        lease_holder=f"""
            SELECT {lease_columns}, {now} FROM {s}.leases WHERE execution_id = %s
        """,
        # Held (the newest token, not released), even if it expired: see leases.py.
        renew_lease=f"""
            UPDATE {s}.leases SET expires_at = {now} + %s
            WHERE execution_id = %s AND token = %s AND expires_at > 0
            RETURNING {lease_columns}
        """,
        release_lease=f"""
            UPDATE {s}.leases SET expires_at = 0 WHERE execution_id = %s AND token = %s
        """,
        live_leases=f"""
            SELECT {lease_columns} FROM {s}.leases WHERE expires_at > {now}
            ORDER BY execution_id
        """,
        # Retention: the only statements that delete or change stored rows. Each is one
        # statement, so one transaction; it returns how many versions (blobs) went.
        delete_executions=f"""
            WITH named AS (
                SELECT unnest(%s::text[]) AS execution_id
            ), versions AS (
                DELETE FROM {s}.nodes WHERE execution_id IN (SELECT execution_id FROM named)
                RETURNING 1
            ), listed AS (
                DELETE FROM {s}.executions
                WHERE execution_id IN (SELECT execution_id FROM named)
            ), leased AS (
                DELETE FROM {s}.leases WHERE execution_id IN (SELECT execution_id FROM named)
            )
            SELECT count(*) FROM versions
        """,
        # The execution's row goes with its last version, in the same statement: each
        # part sees the rows as they were before it, so "no other version left" is "no
        # version of a node not named".
        delete_nodes=f"""
            WITH named AS (
                SELECT %s::text AS execution_id, %s::text[] AS node_ids
            ), versions AS (
                DELETE FROM {s}.nodes AS n USING named
                WHERE n.execution_id = named.execution_id AND n.node_id = ANY(named.node_ids)
                RETURNING 1
            ), listed AS (
                DELETE FROM {s}.executions AS e USING named
                WHERE e.execution_id = named.execution_id AND EXISTS (SELECT 1 FROM versions)
                    AND NOT EXISTS (
                        SELECT 1 FROM {s}.nodes AS n
                        WHERE n.execution_id = named.execution_id
                            AND n.node_id <> ALL(named.node_ids)
                    )
            )
            SELECT count(*) FROM versions
        """,
        drop_checkpoints=f"""
            WITH kept AS (
                SELECT seq FROM {s}.nodes
                WHERE execution_id = %s AND checkpoint IS NOT NULL
                ORDER BY seq DESC LIMIT %s::bigint
            ), dropped AS (
                UPDATE {s}.nodes SET checkpoint = NULL
                WHERE execution_id = %s AND checkpoint IS NOT NULL
                    AND seq NOT IN (SELECT seq FROM kept)
                RETURNING 1
            )
            SELECT count(*) FROM dropped
        """,
        open_runs=f"""
            SELECT execution_id, started_at, agent, status FROM {s}.executions
            WHERE status IN ('PENDING', 'RUNNING')
            ORDER BY started_at, execution_id COLLATE "C"
        """,
        unindexed=f"SELECT EXISTS (SELECT 1 FROM {s}.executions WHERE started_at IS NULL)",
        backfill=_entry(
            s,
            f"execution_id IN (SELECT execution_id FROM {s}.executions "
            f"WHERE started_at IS NULL LIMIT {BACKFILL_CHUNK})",
        ),
        reindex_execution=_entry(s, "execution_id = %s"),
    )


BACKFILL_CHUNK = 1000  # executions a backfill statement fills


def _entry(s: str, target: str) -> str:
    """An UPDATE setting the index columns of the executions `target` names from their
    rows: the first version's created_at, the newest run record's status and agent."""
    run = f"""
        FROM {s}.nodes AS n WHERE n.execution_id = e.execution_id
        AND n.node_id = e.execution_id || '/run' ORDER BY n.seq DESC LIMIT 1
    """
    return f"""
        UPDATE {s}.executions AS e SET
            started_at = (SELECT n.created_at FROM {s}.nodes AS n
                          WHERE n.execution_id = e.execution_id ORDER BY n.seq LIMIT 1),
            status = (SELECT n.status {run}),
            agent = coalesce((SELECT CASE WHEN jsonb_typeof(n.body->'metadata'->'agent')
                              = 'string' THEN n.body->'metadata'->>'agent' END {run}), '')
        WHERE {target}
    """


# A stored row's run record status and agent (NULL, NULL when it is not a run record).
_RUN = "node_id = execution_id || '/run'"
_RUN_STATUS = f"CASE WHEN {_RUN} THEN status END AS run_status"
_RUN_AGENT = (
    f"CASE WHEN {_RUN} AND jsonb_typeof(body->'metadata'->'agent') = 'string' "
    "THEN body->'metadata'->>'agent' END AS run_agent"
)

_HAS_USAGE = (
    "(model IS NOT NULL OR prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL "
    "OR cost IS NOT NULL)"
)
_GROUP = {
    "execution": "execution_id",
    "model": "coalesce(model, '')",
    "day": "substr(created_at, 1, 10)",
    "total": "'total'",
}


def qualified(schema: str, table: str) -> str:
    """`"schema".table`, as to_regclass expects it."""
    return f"{quote_ident(schema)}.{table}"


def to_columns(records: Sequence[NodeRecord]) -> list[list[object]]:
    """The batch as one array per column, the parameters of `append`."""
    return [list(column) for column in zip(*(record.as_row() for record in records), strict=True)]


# -- DSN masking --------------------------------------------------------------------------------

_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']\S*|'.*$)")


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ***, for reprs, logs and errors: a URL
    (`postgresql://user:secret@host/db?password=secret`) or a keyword/value string
    (`host=h password='se cret'`)."""
    if "://" in dsn:
        return mask_url(dsn)
    return _KEYWORD_PASSWORD.sub(r"\1***", dsn)


def dsn_secrets(dsn: str) -> list[str]:
    """The password strings in `dsn`, to scrub from messages."""
    if "://" in dsn:
        return url_secrets(dsn)
    secrets = []
    for match in _KEYWORD_PASSWORD.finditer(dsn):
        value = match.group(2)
        secrets.append(value)
        if value.startswith("'") and value.endswith("'") and len(value) >= 2:
            secrets.append(value[1:-1].replace("\\'", "'").replace("\\\\", "\\"))
    return secrets


def scrub(message: str, dsn: str) -> str:
    """`message` with the DSN masked and its password removed wherever it appears."""
    return redact(message, dsn, mask_dsn(dsn), dsn_secrets(dsn))
