"""What the command prints, and where: JSON or rich renderings on stdout, one-line
messages on stderr, progress on stderr only when it is a terminal; passwords masked in
every message."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import click
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from livingai import scrub_url

# `scheme://user:password@` and `?password=` anywhere in a text: a URL in a message that
# was not given to this command (the store's own messages are masked already)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):[^@/?#\s]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&#\s]*")
NOT_A_TERMINAL_WIDTH = 160  # rich's 80 columns would fold ids when the output is piped


class Secrets:
    """Masks the passwords of the store URLs this command was given in any text."""

    def __init__(self, urls: Iterable[str] = ()) -> None:
        self.urls = [url for url in urls if "://" in url]

    @classmethod
    def of_command_line(cls, argv: Sequence[str]) -> Secrets:
        """The secrets of every URL on the command line or in LIVINGAI_STORE."""
        urls = [arg.partition("=")[2] if arg.startswith("--") else arg for arg in argv]
        urls.append(os.environ.get("LIVINGAI_STORE", ""))
        return cls(urls)

    def scrub(self, text: str) -> str:
        for url in self.urls:
            text = scrub_url(text, url)
        text = _USERINFO.sub(r"\g<head>:***@", text)
        return _QUERY_PASSWORD.sub(r"\g<head>***", text)


def one_line(message: str) -> str:
    """A message on one line: the store-URL list some messages end with is left to
    `livingai --help`; other lines are joined with "; "."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    if len(lines) > 1 and lines[1].startswith("accepted store URLs"):
        return f"{lines[0]} (`livingai --help` lists the accepted store URLs)"
    return "; ".join(lines)


def error_line(message: str, secrets: Secrets) -> str:
    return secrets.scrub(f"livingai: error: {one_line(message)}")


def _stdout_width() -> int | None:
    if sys.stdout.isatty():
        return None  # rich asks the terminal
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() else NOT_A_TERMINAL_WIDTH


class Io:
    """The output of one command: JSON (`--json`) or rich renderings on stdout; log lines
    and progress on stderr."""

    def __init__(self, as_json: bool, secrets: Secrets) -> None:
        self.as_json = as_json
        self.secrets = secrets
        self.out = Console(highlight=False, width=_stdout_width())
        self.err = Console(stderr=True, highlight=False)

    def data(self, value: Any) -> None:
        """Machine-readable output: `value` as JSON on stdout, as stored (not masked)."""
        click.echo(json.dumps(value, indent=2, default=str))

    def show(self, *renderables: RenderableType) -> None:
        """Rich renderings on stdout, passwords masked."""
        with self.out.capture() as captured:
            self.out.print(*renderables)
        text = captured.get()
        if not self.out.is_terminal:  # rich pads lines to the width: not in a file
            text = "".join(line.rstrip() + "\n" for line in text.splitlines())
        click.echo(self.secrets.scrub(text), nl=False)

    def line(self, text: str) -> None:
        click.echo(self.secrets.scrub(text))

    def note(self, text: str) -> None:
        """A hint for a person at a terminal (stderr); nothing when piped."""
        if self.interactive:
            self.err.print(Text(self.secrets.scrub(text), style="dim"), soft_wrap=True)

    @property
    def interactive(self) -> bool:
        """Progress and hints only for a person watching stderr: TTY_INTERACTIVE=1 or 0
        forces it either way (rich's convention)."""
        forced = os.environ.get("TTY_INTERACTIVE")
        if forced in ("0", "1"):
            return forced == "1"
        return sys.stderr.isatty() and self.err.is_interactive

    @contextlib.contextmanager
    def working(self, description: str, total: int | None = None) -> Iterator[Callable[[], None]]:
        """Progress on stderr while the block runs (a bar when `total` is known, else a
        spinner); yields the function that advances it by one. Quiet when not a TTY."""
        if not self.interactive:
            yield lambda: None
            return
        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        progress = Progress(*columns, TimeElapsedColumn(), console=self.err, transient=True)
        with progress:
            task = progress.add_task(description, total=total)
            yield lambda: progress.advance(task)

    @contextlib.contextmanager
    def logging(self, level: int) -> Iterator[None]:
        """livingai's log records at `level` and above, one line each on stderr, while the
        block runs (a Redis without persistence, a write given up, ...)."""
        logger = logging.getLogger("livingai")
        handler = _OneLineHandler(self)
        saved = logger.level, logger.propagate
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]


class _OneLineHandler(logging.Handler):
    """`livingai: warning: ...`, never a traceback; printed above any progress bar."""

    def __init__(self, io: Io) -> None:
        super().__init__()
        self.io = io

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"livingai: {record.levelname.lower()}: {one_line(record.getMessage())}"
            self.io.err.print(Text(self.io.secrets.scrub(text)), soft_wrap=True)
        except Exception:
            self.handleError(record)
