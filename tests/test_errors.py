"""The exception tree: one root, the documented builtin bases, a docstring that stays complete."""

from __future__ import annotations

import inspect
import re

import pytest

import livingai
from livingai import (
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
from livingai._core import errors as _errors

PUBLIC_ERRORS: list[type[LivingAIError]] = [
    BacklogFullError,
    CheckpointCorruptError,
    ClosedError,
    ConfigError,
    ExecutionNotFoundError,
    FencedError,
    InDoubtError,
    InvalidNodeError,
    LeaseHeldError,
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
]

BUILTIN_BASE: dict[type[LivingAIError], type[Exception] | None] = {
    ConfigError: ValueError,
    InvalidNodeError: ValueError,
    CheckpointCorruptError: ValueError,
    ExecutionNotFoundError: LookupError,
    ClosedError: RuntimeError,
    WrongLoopError: RuntimeError,
    BacklogFullError: RuntimeError,
    StoreError: None,
    RecordRejectedError: None,
    FencedError: None,
    StoreUnusableError: None,
    StoreOutageError: None,
    LeaseHeldError: RuntimeError,
    NondeterminismError: RuntimeError,
    NotInStepError: RuntimeError,
    ReplayDivergedError: RuntimeError,
    StepNotFoundError: LookupError,
    InDoubtError: None,
    NeedsHumanError: None,
    StepFailedError: None,
    MissingExtraError: ImportError,
}
# Where each error hangs in the tree (every other one hangs from LivingAIError).
PARENT: dict[type[LivingAIError], type[LivingAIError]] = {
    RecordRejectedError: StoreError,
    FencedError: RecordRejectedError,
    StoreUnusableError: StoreError,
    StoreOutageError: StoreError,
}


def _defined_errors() -> dict[str, type[BaseException]]:
    return {
        name: obj
        for name, obj in vars(_errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == _errors.__name__
    }


def test_root_is_an_exception() -> None:
    assert issubclass(LivingAIError, Exception)
    assert LivingAIError.__bases__ == (Exception,)


@pytest.mark.parametrize("error", PUBLIC_ERRORS, ids=lambda e: e.__name__)
def test_every_public_error_subclasses_the_root(error: type[LivingAIError]) -> None:
    assert issubclass(error, LivingAIError)
    assert error is not LivingAIError
    with pytest.raises(LivingAIError):
        raise error("message")


def test_every_exported_exception_is_listed() -> None:
    exported = {
        getattr(livingai, name)
        for name in livingai.__all__
        if inspect.isclass(getattr(livingai, name))
        and issubclass(getattr(livingai, name), BaseException)
    }
    assert exported == {LivingAIError, *PUBLIC_ERRORS}
    assert set(_defined_errors().values()) == exported


@pytest.mark.parametrize(("error", "base"), list(BUILTIN_BASE.items()), ids=lambda v: str(v))
def test_builtin_bases(error: type[LivingAIError], base: type[Exception] | None) -> None:
    parent = PARENT.get(error, LivingAIError)
    expected = (parent,) if base is None else (parent, base)
    assert error.__bases__ == expected
    if base is not None:
        with pytest.raises(base):
            raise error("caught by the builtin type too")


def test_bases_are_exclusive() -> None:
    """No error is accidentally a ValueError, LookupError, RuntimeError or ImportError too."""
    families = (ValueError, LookupError, RuntimeError, ImportError)
    for error, base in BUILTIN_BASE.items():
        assert [f for f in families if issubclass(error, f)] == ([] if base is None else [base])


def test_docstring_names_every_exception_class() -> None:
    doc = _errors.__doc__
    assert doc is not None
    defined = _defined_errors()
    assert defined  # the module does define errors
    for name in defined:
        assert re.search(rf"\b{name}\b", doc), f"{name} is missing from the _errors docstring"


def test_docstring_tree_matches_the_classes() -> None:
    """Each tree line `Name (Base)` (or bare `Name`) states the class's real bases, and
    hangs under its parent class."""
    doc = _errors.__doc__
    assert doc is not None
    defined = _defined_errors()
    drawn: dict[str, tuple[str, str | None]] = {}  # name -> (parent, builtin base)
    parents: dict[int, str] = {}  # column of a branch -> the class drawn there
    for line in doc.splitlines():
        match = re.search(r"[├└]── (\w+)(?: \((\w+)\))?", line)
        if match is None:
            continue
        column = match.start()
        parents[column + 4] = match.group(1)
        drawn[match.group(1)] = (parents.get(column, "LivingAIError"), match.group(2))
    assert set(drawn) == set(defined) - {"LivingAIError"}
    assert re.search(r"^LivingAIError$", doc, re.MULTILINE), "the tree's root line is missing"
    for name, (parent, base_name) in drawn.items():
        error = defined[name]
        assert error.__bases__[0].__name__ == parent, name
        builtin_bases = [b.__name__ for b in error.__bases__[1:]]
        assert builtin_bases == ([] if base_name is None else [base_name]), name


def test_missing_extra_error_is_catchable_as_import_error() -> None:
    with pytest.raises(ImportError, match=r"livingai\[zstd\]") as info:
        raise MissingExtraError('run: pip install "livingai[zstd]"')
    assert isinstance(info.value, LivingAIError)
