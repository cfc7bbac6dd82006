"""Lease rules written once, for the stores that decide them in Python (memory, SQLite);
PostgreSQL and Redis decide the same way on the server. No I/O here.

A lease is *held* while its token is the execution's newest and it was not released:
its holder may renew it and write under it (fencing checks the token alone), even past
`expires_at` after a store outage kept it from renewing. It is *live* until `expires_at`:
until then no other worker may take it, unless that worker knows the holder is gone
(`take_over`: a dead process on this machine). Taking a lease always gives a new token,
which fences off every earlier holder."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import FencedError, LeaseHeldError
from .store import Lease


def next_lease(
    current: Lease | None,
    execution_id: str,
    worker_id: str,
    seconds: float,
    now: float,
    take_over: str | None = None,
) -> Lease:
    """The lease `worker_id` gets, given the one the store holds: a new token, always.
    LeaseHeldError when another worker's lease is still live, unless that worker is
    `take_over` (known to be gone)."""
    if (
        current is not None
        and current.worker_id not in (worker_id, take_over)
        and current.expires_at > now
    ):
        raise held(current, now)
    token = 1 if current is None else current.token + 1
    return Lease(execution_id, worker_id, token, now + seconds)


def still_held(current: Lease | None, token: int) -> bool:
    """Whether the lease given with `token` is still its holder's: not taken, not
    released (a released lease expires at 0). Expiry alone does not end it."""
    return current is not None and current.token == token and current.expires_at > 0


def held(current: Lease, now: float) -> LeaseHeldError:
    return LeaseHeldError(
        f"execution {current.execution_id!r} is run by worker {current.worker_id!r}, whose "
        f"lease expires in {max(0.0, current.expires_at - now):.1f}s",
        execution_id=current.execution_id,
        holder=current.worker_id,
        expires_at=current.expires_at,
    )


def fenced(store: object, execution_ids: Iterable[str]) -> FencedError:
    names = ", ".join(repr(x) for x in sorted(set(execution_ids)))
    return FencedError(
        f"{store!r}: the lease on execution {names} was taken over by another worker or "
        "expired: this worker may not write there any more"
    )
