"""Where RedisStore's keys go: one layout on a standalone Redis, BUCKETS of them on a
Redis Cluster (no I/O here).

On a cluster every script must touch one hash slot, and what spans executions (the
executions list, the index, the usage counters by day, the seq counter, the node lists,
the lease token counter) cannot all live in one slot without putting the whole store on
one primary. So the store is split into BUCKETS buckets: each is a complete standalone
layout (redis_keys) under its own prefix, `<prefix>:{<tag>}`, whose hash tag puts every
key of the bucket in one slot. An execution lives in the bucket `bucket_of(id)` (CRC-32 of
its id), all its keys and its lease there, so every script (a batch's part for one
bucket, a read, a retention step, a lease) runs on one slot, atomically. The tags are
picked (`bucket_prefixes`) so that bucket i's slot falls in the i-th of BUCKETS equal
ranges of the 16384 slots: with redis-cli's even split of the slots the buckets spread
evenly over 1, 2, 3, 4, 6 or 12 primaries.

What the store reads across executions gathers from every bucket, each bounded: a page
takes at most limit + 1 entries from each (BUCKETS x (limit + 1) merged); a node id,
which may be used by executions in any bucket, is looked up in all of them (one small
script each, at once) and the newest version wins. Order across buckets comes from the
seq counter, which on a cluster is a clock: each version's seq is the larger of the
bucket's last seq + 1 and the stamp the client gave it (`Stamps`: microseconds since
the epoch, strictly increasing within a process and within a batch, in batch order), so
first-seen order and a reused node id's history are exact for one process and as close
as the clients' clocks agree for several.
"""

from __future__ import annotations

import binascii
import time
import zlib
from dataclasses import dataclass

BUCKETS = 12  # fixed: it is where data lives (changing it would need a migration)
SLOTS = 16384


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM, the checksum Redis Cluster maps keys to slots with."""
    return binascii.crc_hqx(data, 0)


def key_slot(key: str) -> int:
    """The hash slot of a key, as Redis Cluster computes it (its {hash tag}, if any)."""
    data = key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return crc16(data) % SLOTS


def bucket_prefixes(prefix: str) -> tuple[str, ...]:
    """The key prefix of each bucket: `<prefix>:{<prefix>/<i>/<k>}` with the first k
    that puts bucket i's slot in the i-th of BUCKETS equal ranges of slots."""
    found = []
    for i in range(BUCKETS):
        low, high = i * SLOTS // BUCKETS, (i + 1) * SLOTS // BUCKETS
        for k in range(100_000):
            tag = f"{prefix}/{i}/{k}"
            if low <= crc16(tag.encode()) % SLOTS < high:
                found.append(f"{prefix}:{{{tag}}}")
                break
        else:  # pragma: no cover - a CRC spreads far better than this
            raise AssertionError(f"no tag found for bucket {i}")
    return tuple(found)


def bucket_of(execution_id: str) -> int:
    return zlib.crc32(execution_id.encode()) % BUCKETS


@dataclass
class Stamps:
    """The client's clock for a cluster's seq (see above): microseconds since the epoch,
    never twice the same and never going back within the process."""

    last: int = 0

    def take(self, count: int) -> int:
        """The first of `count` consecutive stamps."""
        first = max(time.time_ns() // 1000, self.last + 1)
        self.last = first + count - 1
        return first
