"""Every error livingai raises, in one tree.

LivingAIError
├── ConfigError (ValueError)             a setting or a store URL is not valid; names it
│                                        and, for a URL, the accepted forms
├── InvalidNodeError (ValueError)        a node field cannot be stored (not JSON, bad enum)
├── CheckpointCorruptError (ValueError)  a stored blob cannot be decoded: bad codec byte,
│                                        truncated or corrupt payload; names the node id
├── ExecutionNotFoundError (LookupError) no node of that execution is stored
├── StepNotFoundError (LookupError)      an execution has no such step; lists its steps
├── ClosedError (RuntimeError)           an engine or store used after close()
├── WrongLoopError (RuntimeError)        an engine used from an event loop other than
│                                        the one it was first used on
├── BacklogFullError (RuntimeError)      the durable write backlog stayed full for a whole
│                                        budget; the save was refused, nothing was stored
├── LeaseHeldError (RuntimeError)        another live worker holds the execution's lease;
│                                        names it and when the lease expires
├── NondeterminismError (RuntimeError)   a run's step differs from the one recorded at
│                                        the same position; names both
├── ReplayDivergedError (RuntimeError)   a replayed agent asked for a call the recording
│                                        cannot serve; names the step, the closest
│                                        recorded call, and what differs
├── NotInStepError (RuntimeError)        current_step() called outside a run's step or tool
├── InDoubtError                         a tool's intent is recorded and its outcome is
│                                        not: it may or may not have acted; carries the
│                                        execution id, the step and its idempotency key
├── NeedsHumanError                      a run stopped to wait for a person's decision (a
│                                        tool call to approve, say); carries the execution
│                                        id, why, and the details; the run stays unfinished
├── StepFailedError                      a recorded step failure whose exception type
│                                        cannot be rebuilt; carries its type and message
├── StoreError                           the store failed (down, refused, locked, timed
│   │                                    out); the engine retries these itself
│   ├── RecordRejectedError              the store refuses these records for good (too
│   │   │                                large, a key of the wrong type): the engine
│   │   │                                isolates them, commits the rest, rejects them
│   │   └── FencedError                  the write's lease was taken over by another
│   │                                    worker (or expired): it may not write there now
│   ├── StoreUnusableError               the store cannot work as configured (read-only,
│   │                                    not a database, missing directory, bad
│   │                                    credentials); names the path or URL and the cause
│   └── StoreOutageError                 a durable run waited out a store outage up to
│                                        its bound and gave up; names the store and the
│                                        seconds waited; the run resumes later
└── MissingExtraError (ImportError)      an optional extra is not installed; names the
                                         `pip install "livingai[extra]"` to run
"""

from __future__ import annotations


class LivingAIError(Exception):
    """Root of every error raised by livingai."""


class ConfigError(LivingAIError, ValueError):
    """A setting (budget, capacity, store URL, ...) is not valid; the message names it."""


class InvalidNodeError(LivingAIError, ValueError):
    """A node cannot be stored as given; the message names the field and the value."""


class CheckpointCorruptError(LivingAIError, ValueError):
    """A stored state blob cannot be decoded; the message names the node id."""


class ExecutionNotFoundError(LivingAIError, LookupError):
    """No node of the execution is stored."""


class StepNotFoundError(LivingAIError, LookupError):
    """An execution has no step by that position, node id or name."""


class ClosedError(LivingAIError, RuntimeError):
    """An engine or a store was used after close()."""


class WrongLoopError(LivingAIError, RuntimeError):
    """An engine was used from an event loop other than the one it belongs to."""


class BacklogFullError(LivingAIError, RuntimeError):
    """The durable-write backlog stayed full for a whole budget; the save was refused."""


class LeaseHeldError(LivingAIError, RuntimeError):
    """Another live worker holds the execution's lease: one worker at a time runs it."""

    def __init__(
        self, message: str, *, execution_id: str = "", holder: str = "", expires_at: float = 0.0
    ) -> None:
        super().__init__(message)
        self.execution_id = execution_id
        self.holder = holder
        self.expires_at = expires_at


class NondeterminismError(LivingAIError, RuntimeError):
    """A resumed run asked for a step other than the one recorded at that position: the
    agent's code took another path than it did before the crash."""


class ReplayDivergedError(LivingAIError, RuntimeError):
    """A replay needed the recording to answer a call it does not have (a tool called
    with other arguments, a model asked something else): the replay stops rather than
    call a live system or make an answer up. `execution_id` is the replay's own
    execution, recorded as failed with this error."""

    def __init__(self, message: str, *, execution_id: str = "") -> None:
        super().__init__(message)
        self.execution_id = execution_id


class NotInStepError(LivingAIError, RuntimeError):
    """current_step() was called outside the function of a run's step or tool."""


class InDoubtError(LivingAIError):
    """A tool's intent was recorded and its outcome was not: it may or may not have
    acted. It is not run again silently: retry it with its key, reconcile it, or have a
    human decide."""

    def __init__(
        self, message: str, *, execution_id: str = "", step: str = "", idempotency_key: str = ""
    ) -> None:
        super().__init__(message)
        self.execution_id = execution_id
        self.step = step
        self.idempotency_key = idempotency_key


class NeedsHumanError(LivingAIError):
    """A run stopped to wait for a person's decision (Runtime.needs_human marked it): it
    is not its outcome. The run stays unfinished, listed by `pending()` with `why` and
    `details`, and continues when run again after the decision is recorded."""

    def __init__(
        self,
        message: str,
        *,
        execution_id: str = "",
        why: str = "",
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.execution_id = execution_id
        self.why = why
        self.details = {} if details is None else details


class StepFailedError(LivingAIError):
    """A step failure recorded earlier, re-raised on resume, whose exception type cannot
    be rebuilt here; `type_name` names it."""

    def __init__(self, message: str, *, type_name: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name


class StoreError(LivingAIError):
    """The store failed to read or write; the message names the store. Transient: worth
    retrying (the engine does)."""


class RecordRejectedError(StoreError):
    """The store can never accept these records as they are; retrying cannot help. The
    message names the store and its reason."""


class FencedError(RecordRejectedError):
    """A write under a lease that another worker has taken over (or that expired): the
    worker that wrote it no longer owns the execution, so it may not write there."""


class StoreUnusableError(StoreError):
    """The store cannot work as configured; retrying cannot help until someone fixes it.
    The message names the path or URL (password masked) and the cause."""


class StoreOutageError(StoreError):
    """A durable run's store stayed unreachable longer than `Runtime(...,
    store_outage_seconds=)`: the run stops where it was, unfinished, and resumes from
    there when run again (recover_pending()). What it had queued stays queued."""

    def __init__(self, message: str, *, store: str = "", waited_seconds: float = 0.0) -> None:
        super().__init__(message)
        self.store = store
        self.waited_seconds = waited_seconds


class MissingExtraError(LivingAIError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def check_setting(
    name: str, value: object, *, minimum: float, inclusive: bool = True, whole: bool = False
) -> None:
    """Raise ConfigError naming `name` unless `value` is a number (a whole one, with
    `whole`) at least `minimum` (above it, with `inclusive=False`)."""
    kinds = (int,) if whole else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok:  # NaN fails both comparisons
        ok = value >= minimum if inclusive else value > minimum  # type: ignore[operator]
    if not ok:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(
            f"{name} must be {kind} {'>=' if inclusive else '>'} {minimum:g}; got {value!r}"
        )
