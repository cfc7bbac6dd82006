"""`ui`: serve the web UI over the store (`pip install "livingai[ui]"`)."""

from __future__ import annotations

import importlib
import ipaddress
from collections.abc import Sequence

import click

from livingai import scrub_url

from .params import Agent, AgentParam
from .session import Settings, check_sqlite_file

UI_MODULES = ("fastapi", "uvicorn", "jinja2")


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (nobody else can connect to it)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_extra() -> None:
    for name in UI_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            raise click.ClickException(
                f'{name!r} is not installed; run: pip install "livingai[ui]"'
            ) from None


@click.command()
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    help="Where the executions are stored (default: the global --store).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--allow-actions",
    is_flag=True,
    help="Allow replays, forks and resumes (with the token); read-only without it.",
)
@click.option(
    "--token",
    metavar="TOKEN",
    help="The token actions need (one is generated and printed when not given); "
    "required to listen on an address other than loopback.",
)
@click.option(
    "--agent",
    "agents",
    type=AgentParam(),
    multiple=True,
    help="An agent the UI may run, as module:function (repeat for more).",
)
@click.pass_obj
def ui(
    settings: Settings,
    store_url: str | None,
    host: str,
    port: int,
    allow_actions: bool,
    token: str | None,
    agents: Sequence[Agent],
) -> None:
    """Serve the web UI.

    Executions, their steps and timelines (live while they run), diffs, costs and
    pending runs in a browser, and a JSON API under /api/. Read-only unless
    --allow-actions; listening beyond loopback needs --token."""
    url = store_url or settings.store_url
    if not is_loopback(host) and not token:
        raise click.UsageError(
            f"refusing to listen on {host} (not loopback) without --token: anyone who can "
            "reach it would see every execution; give --token, or listen on 127.0.0.1"
        )
    check_extra()
    check_sqlite_file(url)
    import uvicorn

    from livingai.web import create_app

    app = create_app(url, agents=list(agents), allow_actions=allow_actions, token=token)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"livingai ui: {scrub_url(url, url)} at http://{shown}:{port}/")
    if allow_actions and not token:
        click.echo(f"token (for /login and Authorization: Bearer): {app.state.token}")
    elif not allow_actions:
        click.echo("read-only: start with --allow-actions to replay, fork and resume")
    # live pages hold their event streams open: Ctrl-C waits this long for them at most
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
