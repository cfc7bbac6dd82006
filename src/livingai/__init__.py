"""livingai: the reliability layer under AI agents.

Every step is checkpointed without stalling the agent, a crashed run resumes where it
stopped without repeating side effects, and any recorded run can be replayed.

This module is the public face: everything a user, an adapter, the CLI or the web UI
needs is exported here. The layers behind it (`_core`, `_stores`, `_runtime`) are
private; see "How it works" in the README for the map.
"""

from ._core.codec import Codec
from ._core.engine import (
    CheckpointEngine,
    EngineStats,
    NodeState,
)
from ._core.errors import (
    BacklogFullError,
    CheckpointCorruptError,
    ClosedError,
    ConfigError,
    ExecutionNotFoundError,
    FencedError,
    InDoubtError,
    InvalidNodeError,
    LeaseHeldError,
    LivingAIError,
    MissingExtraError,
    NeedsHumanError,
    NondeterminismError,
    NotInStepError,
    RecordRejectedError,
    ReplayDivergedError,
    StepFailedError,
    StepNotFoundError,
    StoreError,
    StoreOutageError,
    StoreUnusableError,
    WrongLoopError,
)
from ._core.listing import MAX_PAGE, ExecutionEntry, ExecutionPage, PageQuery
from ._core.model import (
    ErrorInfo,
    ExecutionNode,
    NodeRecord,
    NodeType,
    Status,
)
from ._core.store import (
    CheckpointStore,
    IndexStore,
    Lease,
    LeaseStore,
    RetentionStore,
    StoreLimits,
    UsageStore,
)
from ._core.urls import scrub_url
from ._core.usage import UsageBy, UsageRow
from ._runtime.catalog import ExecutionSummary, SummaryPage
from ._runtime.costs import Price, PriceTable
from ._runtime.diff import ExecutionDiff, StepDiff
from ._runtime.layout import (
    human_reason,
    state_view,
    step_agent,
    step_kind,
    step_name,
    step_position,
    step_tree,
)
from ._runtime.recovery import RecoveryEngine, RecoveryPlan
from ._runtime.replay import ReplayMode, ReplayReport, ReplayResult, ReplaySession
from ._runtime.retention import GcReport
from ._runtime.runs import (
    NOT_DONE,
    PendingRun,
    RecoveredRun,
    ReplayedRun,
    Run,
    Runtime,
    StepContext,
    current_run,
    current_step,
)
from ._stores.memory import MemoryStore
from ._stores.postgres import PostgresStore  # imports psycopg only when one is created
from ._stores.redis import RedisStore  # imports redis-py only when one is created
from ._stores.sqlite import SQLiteStore
from ._stores.tiered import TieredStats, TieredStore
from ._stores.url import open_store

__version__ = "0.5.0"

__all__ = [
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
