"""Who holds a lease, and whether that process is gone: a killed run resumes at once.

The default worker id is `host:pid@boot.start` (Linux): `boot` is a short hash of the
running kernel's boot id and of this process's pid namespace (a reboot or a new container
changes it), `start` the process's start time in clock ticks since boot. Together they
name one process for good: a pid the kernel gives to another process later comes with
another start time. A holder in that form on this host, with this boot, whose process no
longer runs (or is a zombie) is gone: its lease may be taken over before it expires.
Anything else (another host, another boot, an id given by hand, a system without /proc)
is never taken for gone; without /proc the default id is `host:pid`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
from collections.abc import Iterable
from pathlib import Path

from .._core.store import Lease

_DEFAULT_ID = re.compile(r"(?P<host>.+):(?P<pid>[0-9]+)@(?P<boot>[0-9a-f]{12})\.(?P<start>[0-9]+)")
_DEAD_STATES = ("Z", "X")  # a zombie, or dead: it never runs again


def default_worker_id() -> str:
    """This process's worker id: `host:pid@boot.start`, or `host:pid` without /proc."""
    host, pid = socket.gethostname(), os.getpid()
    boot, found = _boot(), _stat(pid)
    if boot is None or found is None:
        return f"{host}:{pid}"
    return f"{host}:{pid}@{boot}.{found[1]}"


def holder_is_gone(holder: str) -> bool:
    """True only when `holder` is a default worker id of a process of this machine (this
    host, this kernel boot, this pid namespace) that no longer runs: its pid is free, was
    given to a process started at another time, or is a zombie. False whenever in doubt."""
    parts = _DEFAULT_ID.fullmatch(holder)
    if parts is None or parts["host"] != socket.gethostname() or parts["boot"] != _boot():
        return False
    pid = int(parts["pid"])
    if pid <= 0:  # os.kill(0, ...) means the process group: no such holder
        return False
    try:
        os.kill(pid, 0)  # not a signal: whether the pid exists, even if /proc hides it
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, run by another user
    except (OSError, OverflowError):
        return False
    found = _stat(pid)
    if found is None:  # hidden from us (/proc mounted with hidepid), or just exited
        return False
    state, start = found
    return start != int(parts["start"]) or state in _DEAD_STATES


def owned_executions(leases: Iterable[Lease]) -> set[str]:
    """The executions these live leases own, leaving out those whose holder is gone."""
    return {lease.execution_id for lease in leases if not holder_is_gone(lease.worker_id)}


@functools.cache
def _boot() -> str | None:
    """This kernel boot and pid namespace, hashed; None without /proc. Both are fixed for
    the life of a process (unsharing a pid namespace moves only its children)."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return hashlib.sha256(f"{boot_id}/{namespace}".encode()).hexdigest()[:12]


def _stat(pid: int) -> tuple[str, int] | None:
    """The state and start time (field 22, in clock ticks since boot) of process `pid`
    from /proc/<pid>/stat; None when it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text[text.rfind(")") + 1 :].split()  # the name, in parentheses, may hold anything
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None
