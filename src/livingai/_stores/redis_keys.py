"""RedisStore's key layout, record encoding and script arguments (no I/O here); the Lua
scripts are in redis_lua, redis_retain and redis_index, the cluster's buckets in
redis_buckets.

Every key starts with `{p}:`, where `{p}` is the store's prefix on a standalone Redis,
and on a Redis Cluster one of its buckets' prefixes, `<prefix>:{<tag>}` (redis_buckets):
each bucket holds this whole layout for the executions it owns, every key of it in one
hash slot. `{x}` is an execution id, `{n}` a node id, both as given (UTF-8). The id is
always the last part of a key, after a fixed tag, so no id can make two keys collide,
whatever colons it holds.

    {p}:seq              string  the order of versions: standalone, INCR once per stored
                                 version (append order, never the wall clock); on a
                                 cluster a clock, the larger of the last seq + 1 and the
                                 version's stamp (redis_buckets)
    {p}:executions       zset    execution id -> seq of its first version
    {p}:xr:{x}           hash    version id -> packed record, all but the checkpoint's
                                 bytes (see `pack`); a field here is what makes a
                                 version "stored"
    {p}:xb:{x}           hash    version id -> checkpoint bytes, as given (only for
                                 versions that have one)
    {p}:xv:{x}           zset    version id -> seq: every version, append order
    {p}:xn:{x}           zset    node id -> seq of its first version: first-seen order
    {p}:xl:{x}           hash    node id -> version id of its latest version
    {p}:xc:{x}           string  version id of the latest version with a checkpoint
    {p}:n:{n}            list    the node's versions (of this prefix's executions), oldest
                                 first; each entry "<len(version id)>:<version id><x>"
    {p}:touched          zset    (only with a TTL) execution id -> server time of its
                                 last append, to prune expired executions
    {p}:usage:x:{x}      hash    "<day>\\0<model>\\0<counter>" -> sum: the execution's
                                 usage (counters: calls, prompt, completion, cost)
    {p}:usage:d:{day}    hash    "<model>\\0<counter>" -> sum: a day's usage (UTC)
    {p}:usage:days       zset    day -> YYYYMMDD: the days with usage
    {p}:lease:{x}        string  "<token>:<worker id>", expiring by itself (PX): who
                                 runs the execution; see LEASE
    {p}:held:{x}         string  the token of the lease last taken, until released:
                                 its holder may renew it after the key above expired
                                 (a store outage), while no one else took it
    {p}:fence            string  the counter lease tokens come from; never expires
    {p}:leased           zset    execution id -> expiry (ms) of its lease: what leases()
                                 reads, not a SCAN (see LEASE)
    {p}:leasedv          string  "1": every lease is in leased (those taken before it
                                 existed were added once, by one SCAN)
    {p}:ie               hash    execution id -> its index entry (redis_index)
    {p}:ix, {p}:ia:{agent}, {p}:is:{status}, {p}:isa:{status}:{agent}
                         zsets   the index: "<started_at>\\0<x>" by bytes (redis_index)
    {p}:ixv              string  "1" once the index holds every execution (see below)
    {p}:ixb              string  while the backfill runs: the seq of the last execution
                                 it indexed

A batch is stored by one APPEND script call (on a cluster, one per bucket it touches),
so a crash never leaves a version without its index entries or an index entry without
its version. A version whose id is already a field of `xr:{x}` is skipped, so a batch
sent again after a lost reply is stored once. Reads are one READ script call each (on a
cluster, a node id's reads one a bucket, at once).

With a TTL every key an append writes, and every key of the executions it touches
(their node lists and index zsets included), gets that expiry again: an execution
expires as a unit, `ttl` seconds after its last append. Expired executions are pruned
from `{p}:executions` and the index a hundred at a time by later appends, and hidden
from `list_executions`, pages and open runs meanwhile.

Nothing is ever deleted or rewritten but by the RETAIN script, for retention: it deletes
whole executions (every key above that names one, its entries in the node lists, the
index and its usage in the day counters), every version of single nodes of one
execution (their entries in every index above and their usage in the counters; the
execution's index entry is worked out again from what is left; its keys go with its last
version), or the checkpoints of their older versions.

Upgrading: a store written before the index existed (no `{p}:ixv`) is indexed by a
backfill before its first page or open-runs read: BACKFILL calls of at most
redis_index.BACKFILL_CHUNK executions each, in the order they were first seen, each
atomic, its progress kept in `{p}:ixb` so that a backfill cut short (a process killed)
is taken up where it stopped by the next store that reads the index; `{p}:ixv` = "1"
marks it done. It costs one short script call per chunk once (about 2,000 calls for a
million executions), never again. An execution an upgraded process appends to before
the backfill reaches it is indexed by that append, from its log. Processes of an older
version that still write after the backfill leave their new executions out of the index:
upgrade them all.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from .._core.errors import CheckpointCorruptError, StoreError
from .._core.listing import agent_of, is_run_record
from .._core.model import RECORD_COLUMNS, NodeRecord
from .._core.store import Lease
from .._core.usage import has_usage

logger = logging.getLogger("livingai")

FORMAT = 2  # first byte of every packed record; format 1 (no usage columns) still reads


@dataclass(frozen=True)
class Script:
    name: str
    text: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.text.encode(), usedforsecurity=False).hexdigest()


REJECTED = "livingai: rejected:"  # a record's keys hold something else: refuse it
DAMAGED = "livingai: damaged:"  # the prefix's own keys are damaged: nothing can be stored

Arg = str | bytes | int


def append_args(
    prefix: str,
    ttl_seconds: int | None,
    records: Sequence[NodeRecord],
    fences: Mapping[str, int] | None = None,
    stamps: Sequence[int] | None = None,
) -> list[Arg]:
    """The APPEND script's arguments for a batch (see APPEND in redis_lua). A checkpoint
    goes as its own argument, not copied into the packed record: the bytes are sent as
    they are. `stamps`, one per record, make seq a clock (a cluster's bucket)."""
    fenced = [arg for pair in (fences or {}).items() for arg in pair]
    clock = b"" if stamps is None else b"1"
    args: list[Arg] = [prefix, ttl_seconds or 0, 5 + len(fenced), clock, *fenced]
    for n, record in enumerate(records):
        blob = record.checkpoint
        args += (
            record.version_id,
            record.node_id,
            record.execution_id,
            b"0" if blob is None else b"1",
            pack(record),
            b"" if blob is None else blob,
            *_usage_args(record),
            b"" if stamps is None else stamps[n],
            record.created_at,
            run_arg(record),
        )
    return args


def run_arg(record: NodeRecord) -> str:
    """What APPEND indexes of a record (redis_index): for a run record, "<status>\\0
    <agent>"; "" for any other."""
    if not is_run_record(record):
        return ""
    return f"{record.status}\0{agent_of(record)}"


def _usage_args(record: NodeRecord) -> tuple[Arg, ...]:
    """model, prompt tokens, completion tokens, cost and the day it was created: ""
    for none each, and all "" for a version without usage."""
    if not has_usage(record):
        return ("", "", "", "", "")
    numbers = (record.prompt_tokens, record.completion_tokens, record.cost)
    texts = ["" if n is None else repr(n) for n in numbers]
    return (record.model or "", *texts, record.created_at[:10])


STRIDE = 14  # APPEND arguments per record


def owner_of(args: Sequence[Arg], arg: bytes) -> str:
    """The node id of the record whose APPEND argument `arg` is (see append_args)."""
    start = int(args[2]) - 1  # the script's index counts from 1
    index = next(i for i, value in enumerate(args) if value is arg)
    return str(args[start + (index - start) // STRIDE * STRIDE + 1])


FENCED = "livingai: fenced"  # a fenced execution of the batch lost its lease


# -- packed records ---------------------------------------------------------------------
#
# FORMAT, then each column of NodeRecord but the checkpoint, in order, as a 4-byte
# big-endian length and its UTF-8 text (numbers as decimal text), or the length
# 0xFFFFFFFF alone for None: None and "" stay distinct. Last comes the checkpoint's length
# (or 0xFFFFFFFF: none); its bytes are kept apart, in `xb:{x}`, and checked against that
# length when read. Format 1 had the columns up to `body` only (no model and usage).

_LENGTH = struct.Struct(">I")
_NONE = 0xFFFFFFFF
_NONE_HEADER = _LENGTH.pack(_NONE)
_REQUIRED = ("version_id", "node_id", "execution_id", "type", "status", "created_at", "body")
_STRINGS = RECORD_COLUMNS[:-1]  # every column but the checkpoint, in the same order
_FIELDS = {1: _STRINGS[: _STRINGS.index("body") + 1], 2: _STRINGS}  # by format


def pack(record: NodeRecord) -> bytes:
    """The record without its checkpoint's bytes (see above)."""
    parts: list[bytes] = [bytes((FORMAT,))]
    for name in _STRINGS:
        value: object = getattr(record, name)
        if value is None:
            parts.append(_NONE_HEADER)
        else:
            data = (value if isinstance(value, str) else repr(value)).encode()
            parts += (_LENGTH.pack(len(data)), data)
    blob = record.checkpoint
    parts.append(_NONE_HEADER if blob is None else _LENGTH.pack(len(blob)))
    return b"".join(parts)


def unpack(data: bytes, checkpoint: bytes | None) -> NodeRecord:
    """A packed record and its checkpoint; ValueError when they are not one."""
    fields = _FIELDS.get(data[0]) if data else None
    if fields is None:
        first = data[0] if data else None
        raise ValueError(f"not a livingai record of format 1 or 2 (first byte {first!r})")
    pos = 1
    values: list[bytes | None] = []
    for _ in fields:
        if pos + 4 > len(data):
            raise ValueError("truncated record")
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += 4
        if length == _NONE:
            values.append(None)
            continue
        if pos + length > len(data):
            raise ValueError("truncated record")
        values.append(data[pos : pos + length])
        pos += length
    if pos + 4 != len(data):
        raise ValueError("record has a bad length")
    (blob_length,) = _LENGTH.unpack_from(data, pos)
    texts = [None if value is None else value.decode() for value in values]
    for name, text in zip(fields, texts, strict=True):
        if text is None and name in _REQUIRED:
            raise ValueError(f"record has no {name}")
    texts += [None] * (len(_STRINGS) - len(fields))  # format 1: no usage
    if blob_length == _NONE and checkpoint is not None:
        problem = f"a {len(checkpoint)}-byte checkpoint is stored for a version saved without one"
    elif blob_length != _NONE and (checkpoint is None or len(checkpoint) != blob_length):
        got = "none is" if checkpoint is None else f"{len(checkpoint)} bytes are"
        problem = f"its checkpoint was {blob_length} bytes and {got} stored"
    else:
        return NodeRecord.from_row((*texts, checkpoint))
    raise BlobMismatch(NodeRecord.from_row((*texts, None)), problem)


def records_of(reply: object, owner: str, *, listing: bool = True) -> list[NodeRecord]:
    """Records from a READ reply: a packed record, then its checkpoint, per record.

    A record that cannot be read is corrupt in Redis: a listing logs it and goes on
    (a version whose checkpoint is not the one saved is listed without it); a read of
    that one record raises CheckpointCorruptError naming it. `owner`: the store, for
    messages."""
    if reply is None:
        return []
    if not isinstance(reply, list) or len(reply) % 2:
        raise StoreError(f"{owner}: unexpected reply {type(reply).__name__} from Redis")
    records = []
    for head, blob in zip(reply[::2], reply[1::2], strict=True):
        try:
            if not isinstance(head, bytes) or not isinstance(blob, bytes | None):
                raise ValueError("not bytes")
            records.append(unpack(head, blob))
        except (ValueError, UnicodeDecodeError) as exc:
            error = CheckpointCorruptError(f"{owner}: a stored record is corrupt: {exc}")
            if not listing:
                raise error from exc
            logger.error("%s; listed without it", error)
            if isinstance(exc, BlobMismatch):
                records.append(exc.record)
    return records


class BlobMismatch(ValueError):
    """A record whose head reads but whose checkpoint is not the one it was saved with;
    `record` is the version without it."""

    def __init__(self, record: NodeRecord, problem: str) -> None:
        super().__init__(f"node {record.node_id} (version {record.version_id}): {problem}")
        self.record = record


# -- the wire -------------------------------------------------------------------------

PIECE_BYTES = 256 * 1024


def pieces(chunks: Sequence[bytes], size: int = PIECE_BYTES) -> Iterator[list[bytes | memoryview]]:
    """A packed command regrouped into pieces of at most `size` bytes, large arguments
    sliced without copying: each piece is one write to the socket."""
    piece: list[bytes | memoryview] = []
    filled = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            part = view[: size - filled]
            piece.append(part)
            filled += len(part)
            view = view[len(part) :]
            if filled == size:
                yield piece
                piece, filled = [], 0
    if piece:
        yield piece


# -- names ---------------------------------------------------------------------


def scan_pattern(prefix: str, tag: str = "") -> str:
    """A SCAN MATCH pattern for every key under `prefix` (and `tag`, as `lease:`), glob
    characters escaped."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
    return f"{escaped}:{tag}*"


def client_name(prefix: str) -> str:
    """The CLIENT SETNAME of the store's connections: printable ASCII, no spaces."""
    name = "".join(c if "!" <= c <= "~" else "_" for c in prefix)
    return f"livingai:{name}"


# -- leases ---------------------------------------------------------------------


def milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def held_lease(execution_id: str, held: bytes | str, expires_ms: int) -> Lease:
    """A lease from its key's value, "<token>:<worker id>"."""
    text = held.decode() if isinstance(held, bytes) else held
    token, _, worker = text.partition(":")
    return Lease(execution_id, worker, int(token), int(expires_ms) / 1000.0)
