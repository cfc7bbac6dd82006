"""What every command shares: the store it works on, and how it runs its async part
(one asyncio.run per command, the runtime opened and closed around it)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

import click

from livingai import CheckpointEngine, Runtime, open_store

from .output import Io, Secrets

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_STORE = "sqlite:///livingai.db"


@dataclass(frozen=True)
class Settings:
    """The global options, as the group parsed them (`ctx.obj`)."""

    store_url: str
    log_level: int = logging.WARNING
    secrets: Secrets = field(default_factory=Secrets)

    def io(self, as_json: bool) -> Io:
        return Io(as_json, self.secrets)

    def run(self, io: Io, body: Callable[[Runtime], Awaitable[T]]) -> T:
        """Open the store, run `body` with a runtime over it, close everything."""
        check_sqlite_file(self.store_url)

        async def session() -> T:
            async with Runtime(CheckpointEngine(open_store(self.store_url))) as runtime:
                return await body(runtime)

        with io.logging(self.log_level):
            return asyncio.run(session())


def sqlite_path(url: str) -> str | None:
    """The file a sqlite:/// URL names (None for any other URL, or :memory:)."""
    scheme, _, rest = url.partition(":")
    if scheme.lower() != "sqlite" or not rest.startswith("///"):
        return None
    path = unquote(rest[3:].partition("?")[0])
    return None if path in ("", ":memory:") else path


def check_sqlite_file(url: str) -> None:
    """Opening a SQLite URL creates the file: a mistyped path would show an empty store
    rather than an error. Every command here reads (or cleans up) what is stored, so a
    missing file is an error."""
    path = sqlite_path(url)
    if path is not None and not os.path.exists(path):
        raise click.ClickException(
            f"no SQLite database at {path!r} (store {url}); check the path, or --store / "
            "LIVINGAI_STORE: the file is made by the first run that writes to it"
        )


def json_option(fn: F) -> F:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print machine-readable JSON on stdout instead of tables.",
    )(fn)
