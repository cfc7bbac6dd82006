"""Argument checks of the retention calls, written once for every store (no I/O here).

Deleting cannot be undone, so a mistaken argument is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ConfigError, check_setting


def execution_ids_to_delete(execution_ids: Sequence[str]) -> list[str]:
    """The ids, each once, in order. A lone string is refused: as a sequence it would
    name one execution per character."""
    if isinstance(execution_ids, str | bytes):
        raise ConfigError(
            f"execution_ids must be a sequence of execution ids, not one string; "
            f"got {execution_ids!r} (pass [{execution_ids!r}])"
        )
    ids = list(dict.fromkeys(execution_ids))
    for execution_id in ids:
        if not isinstance(execution_id, str):
            raise ConfigError(f"execution ids are strings; got {execution_id!r}")
    return ids


def check_keep(keep: int) -> int:
    """`keep`, once it is a whole number >= 0."""
    check_setting("keep", keep, minimum=0, whole=True)
    return keep
