"""The web UI: `livingai ui --store URL` (`pip install "livingai[ui]"`), or
`create_app(store_url, ...)`, an ASGI app to mount in a service of one's own.

Server-rendered pages and a JSON API under /api/ over the public API only (`from
livingai import ...`): the executions, one execution's steps and timeline, live while it
runs, diffs, costs, pending runs; replays, forks and resumes when actions are allowed
and the token is shown. Agent text is hostile: everything is escaped and a strict
Content-Security-Policy is sent."""

from .app import create_app

__all__ = ["create_app"]
