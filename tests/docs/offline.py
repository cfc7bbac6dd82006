"""Run a Python module with the network forbidden: `python tests/docs/offline.py MODULE ARGS`
runs `python -m MODULE ARGS`, and any connection to an internet address, any UDP datagram
sent to one and any host name looked up fails there and then (an audit hook raises before
the call is made, so nothing is sent), and fails the run, naming each attempt, even if the
module caught the error. scripts/test builds the site under it:

    python tests/docs/offline.py mkdocs build --strict

Connections over Unix sockets are allowed (they do not leave the machine).
"""

from __future__ import annotations

import runpy
import socket
import sys
import traceback
from typing import Any

INTERNET = (socket.AF_INET, socket.AF_INET6)
LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr")

attempts: list[str] = []


def forbid(event: str, args: tuple[Any, ...]) -> None:
    """The audit hook: refuse what would reach the network, and remember it."""
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, address = args[0], args[-1]
        if getattr(sock, "family", None) not in INTERNET or address is None:
            return
        what = f"{event} to {address!r}"
    elif event in LOOKUPS:
        what = f"{event} of {args[0]!r}"
    else:
        return
    attempts.append(what)
    raise OSError(f"offline: {what} refused: this run may not use the network")


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python tests/docs/offline.py MODULE [ARGS ...]", file=sys.stderr)
        return 2
    sys.addaudithook(forbid)
    sys.argv = list(argv)
    status: Any = 0
    try:
        runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        status = exc.code
    except BaseException:
        traceback.print_exc()
        status = 1
    for what in attempts:
        print(f"offline: {argv[0]} tried the network: {what}", file=sys.stderr)
    if attempts:
        return 1
    if status is None or isinstance(status, int):
        return status or 0
    print(status, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
