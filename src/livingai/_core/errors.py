"""Every error livingai raises, in one tree.

LivingAIError
├── ConfigError (ValueError)             a setting or a store URL is not valid; names it
│                                        and, for a URL, the accepted forms
├── InvalidNodeError (ValueError)        a node field cannot be stored (not JSON, bad enum)
├── CheckpointCorruptError (ValueError)  a stored blob cannot be decoded: bad codec byte,
│                                        truncated or corrupt payload; names the node id
├── ExecutionNotFoundError (LookupError) no node of that execution is stored
├── ClosedError (RuntimeError)           an engine or store used after close()
├── WrongLoopError (RuntimeError)        an engine used from an event loop other than
│                                        the one it was first used on
├── BacklogFullError (RuntimeError)      the durable write backlog stayed full for a whole
│                                        budget; the save was refused, nothing was stored
├── StoreError                           the store failed (down, refused, locked, timed
│   │                                    out); the engine retries these itself
│   ├── RecordRejectedError              the store refuses these records for good (too
│   │                                    large, a key of the wrong type): the engine
│   │                                    isolates them, commits the rest, rejects them
│   └── StoreUnusableError               the store cannot work as configured (read-only,
│                                        not a database, missing directory, bad
│                                        credentials); names the path or URL and the cause
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


class ClosedError(LivingAIError, RuntimeError):
    """An engine or a store was used after close()."""


class WrongLoopError(LivingAIError, RuntimeError):
    """An engine was used from an event loop other than the one it belongs to."""


class BacklogFullError(LivingAIError, RuntimeError):
    """The durable-write backlog stayed full for a whole budget; the save was refused."""


class StoreError(LivingAIError):
    """The store failed to read or write; the message names the store. Transient: worth
    retrying (the engine does)."""


class RecordRejectedError(StoreError):
    """The store can never accept these records as they are; retrying cannot help. The
    message names the store and its reason."""


class StoreUnusableError(StoreError):
    """The store cannot work as configured; retrying cannot help until someone fixes it.
    The message names the path or URL (password masked) and the cause."""


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
