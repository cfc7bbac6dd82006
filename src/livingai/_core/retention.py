"""Argument checks of the retention calls, written once for every store (no I/O here).

Deleting cannot be undone, so a mistaken argument is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .errors import ConfigError, check_setting


def execution_ids_to_delete(execution_ids: Sequence[str]) -> list[str]:
    """The ids, each once, in order. A lone string is refused: as a sequence it would
    name one execution per character."""
    return _ids_to_delete(execution_ids, "execution", nonempty=False)


def node_ids_to_delete(execution_id: str, node_ids: Sequence[str]) -> list[str]:
    """The node ids, each once, in order, once `execution_id` and every node id is a
    non-empty string (no stored id is empty). A lone string is refused: as a sequence it
    would name one node per character."""
    if not isinstance(execution_id, str) or not execution_id:
        raise ConfigError(f"execution_id must be a non-empty string; got {execution_id!r}")
    return _ids_to_delete(node_ids, "node", nonempty=True)


def _ids_to_delete(ids: Sequence[str], kind: str, *, nonempty: bool) -> list[str]:
    if isinstance(ids, str | bytes):
        raise ConfigError(
            f"{kind}_ids must be a sequence of {kind} ids, not one string; "
            f"got {ids!r} (pass [{ids!r}])"
        )
    if not isinstance(ids, Iterable):
        raise ConfigError(f"{kind}_ids must be a sequence of {kind} ids; got {ids!r}")
    listed = list(ids)
    for one in listed:
        if not isinstance(one, str):
            raise ConfigError(f"{kind} ids are strings; got {one!r}")
        if nonempty and not one:
            raise ConfigError(f"{kind} ids are non-empty strings; got {one!r}")
    return list(dict.fromkeys(listed))


def check_keep(keep: int) -> int:
    """`keep`, once it is a whole number >= 0."""
    check_setting("keep", keep, minimum=0, whole=True)
    return keep
