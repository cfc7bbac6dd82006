"""Lazy imports of optional extras, failing at the point of use with the install line."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise MissingExtraError naming `pip install "livingai[extra]"`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f'{module!r} is not installed; run: pip install "livingai[{extra}]"'
        ) from exc


def available(module: str) -> bool:
    """True when `module` imports; used to pick defaults, never to fail."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
