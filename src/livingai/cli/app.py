"""The `livingai` group: global options, the commands, and one policy for errors: one
line on stderr (`livingai: error: ...`, passwords masked), exit status 2 for a usage
error and 1 for any other, never a traceback (LIVINGAI_DEBUG=1 shows it)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from livingai import LivingAIError, __version__

from . import browse, operate, serve
from .output import Secrets, error_line
from .session import DEFAULT_STORE, Settings

EXIT_INTERRUPTED = 130


def guarded(call: Callable[[], Any], secrets: Secrets) -> int:
    """Run the command line; print any error as one line; the exit status."""
    try:
        returned = call()
    except click.UsageError as exc:
        where = "" if exc.ctx is None else f" (see '{exc.ctx.command_path} --help')"
        return _fail(exc.format_message() + where, exc.exit_code, secrets)
    except click.ClickException as exc:
        return _fail(exc.format_message(), exc.exit_code, secrets)
    except click.Abort:
        return _fail("interrupted", EXIT_INTERRUPTED, secrets)
    except LivingAIError as exc:
        return _fail(str(exc), 1, secrets)
    except Exception as exc:
        if os.environ.get("LIVINGAI_DEBUG") == "1":
            raise
        return _fail(
            f"unexpected {type(exc).__name__}: {exc} (LIVINGAI_DEBUG=1 shows the traceback)",
            1,
            secrets,
        )
    return returned if isinstance(returned, int) else 0


def _fail(message: str, code: int, secrets: Secrets) -> int:
    click.echo(error_line(message, secrets), err=True)
    return code


class LivingAIGroup(click.Group):
    """A group whose stand-alone run prints errors as livingai does (see guarded)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        parent = super().main
        argv = list(sys.argv[1:] if args is None else args)
        extra["windows_expand_args"] = windows_expand_args
        if not standalone_mode:
            return parent(argv, prog_name, complete_var, standalone_mode=False, **extra)
        call = functools.partial(
            parent, argv, prog_name or "livingai", complete_var, standalone_mode=False, **extra
        )
        sys.exit(guarded(call, Secrets.of_command_line(argv)))


EPILOG = """\b
Store URLs (--store, or LIVINGAI_STORE):
  sqlite:///relative/path.db     sqlite:////absolute/path.db
  redis://[:password@]host[:port][/db][?prefix=livingai]
  postgresql://[user[:password]@]host[:port]/database[?schema=livingai]
  tiered:<redis URL>|<postgresql URL>
Passwords are masked in every message.

\b
Documentation: docs/ in livingai's repository (start at docs/index.md), or as a site,
from the repository's root:
  pip install -e ".[docs]" && mkdocs serve      then open http://127.0.0.1:8000/
"""


@click.group(
    cls=LivingAIGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG,
)
@click.option(
    "--store",
    "store_url",
    envvar="LIVINGAI_STORE",
    show_envvar=True,
    default=DEFAULT_STORE,
    show_default=True,
    metavar="URL",
    help="Where the executions are stored (see the forms below).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print errors only, not livingai's warnings.")
@click.option("-v", "--verbose", is_flag=True, help="Print livingai's informational messages too.")
@click.version_option(
    __version__, "--version", prog_name="livingai", message="%(prog)s %(version)s"
)
@click.pass_context
def cli(ctx: click.Context, store_url: str, quiet: bool, verbose: bool) -> None:
    """Inspect, replay and repair the runs livingai recorded.

    List them, show one step by step, replay one against a new version of the agent,
    diff two, fork one, add up what the model calls cost, export the log, clean up old
    runs, and resume the runs a crash left behind.

    Every command takes --json for machine-readable output. Errors are one line on
    stderr; the exit status is 2 for a usage error, 1 for any other.
    """
    level = logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    ctx.obj = Settings(store_url, level, Secrets([store_url]))


def _store_here(ctx: click.Context, _: click.Parameter, url: str | None) -> None:
    """`--store` given after the command: the store it works on."""
    if url is not None:
        settings: Settings = ctx.obj
        ctx.obj = dataclasses.replace(
            settings, store_url=url, secrets=Secrets([*settings.secrets.urls, url])
        )


for command in (
    browse.list_executions,
    browse.show,
    operate.replay,
    browse.diff,
    operate.fork,
    browse.costs,
    browse.export,
    operate.gc,
    operate.pending,
    operate.recover,
    browse.stats,
    serve.ui,
):
    if any("--store" in param.opts for param in command.params):  # `ui` has its own
        cli.add_command(command)
        continue
    command.params.append(
        click.Option(
            ["--store", "store_url"],
            metavar="URL",
            expose_value=False,
            callback=_store_here,
            help="Where the executions are stored: as `livingai --store URL ...`, given "
            "after the command (it wins over the one before).",
        )
    )
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> None:
    """The `livingai` command (and `python -m livingai`)."""
    cli.main(args=argv, prog_name="livingai")
