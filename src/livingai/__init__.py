"""livingai: the reliability layer under AI agents.

Every step is checkpointed without stalling the agent, a crashed run resumes where it
stopped without repeating side effects, and any recorded run can be replayed.
"""

from ._codec import Codec
from ._engine import CheckpointEngine, EngineStats, NodeState
from ._errors import (
    BacklogFullError,
    CheckpointCorruptError,
    ClosedError,
    ExecutionNotFoundError,
    InvalidNodeError,
    LivingAIError,
    MissingExtraError,
    StoreError,
)
from ._model import ErrorInfo, ExecutionNode, NodeRecord, NodeType, Status
from ._postgres import PostgresStore  # imports psycopg only when a PostgresStore is created
from ._recovery import RecoveryEngine, RecoveryPlan
from ._redis import RedisStore  # imports redis-py only when a RedisStore is created
from ._sqlite import SQLiteStore
from ._store import CheckpointStore, MemoryStore
from ._tiered import TieredStore

__version__ = "0.5.0"

__all__ = [
    "BacklogFullError",
    "CheckpointCorruptError",
    "CheckpointEngine",
    "CheckpointStore",
    "ClosedError",
    "Codec",
    "EngineStats",
    "ErrorInfo",
    "ExecutionNode",
    "ExecutionNotFoundError",
    "InvalidNodeError",
    "LivingAIError",
    "MemoryStore",
    "MissingExtraError",
    "NodeRecord",
    "NodeState",
    "NodeType",
    "PostgresStore",
    "RecoveryEngine",
    "RecoveryPlan",
    "RedisStore",
    "SQLiteStore",
    "Status",
    "StoreError",
    "TieredStore",
    "__version__",
]
