"""How a LangGraph thread lies in the livingai log.

A thread is one execution (its id is the thread id), so `livingai show <thread>` and
every other tool see it. Its nodes, all of type MEMORY, have ids `<thread>/<key>`:

- `lg:c/<ns>/<checkpoint id>`: a checkpoint, one version. Its input holds what listing
  and retention need without decoding anything (namespace, id, parent, run id, step,
  channel versions, and which checkpoint holds each channel's value); its state holds
  the rest of the checkpoint, the metadata, and the values of the versions it introduced
  (see values.py): an unchanged value is held by the checkpoint that introduced it, and
  a list that grew from its previous version holds only what it added.
- `lg:v/<ns>/<channel>/<version>`: a value moved out of a checkpoint that retention
  deleted while a kept checkpoint still needs it; stored whole.
- `lg:w/<ns>/<checkpoint id>`: the pending writes of a checkpoint; each `put_writes` call
  adds a version.
- `lg:h/<ns>`: the head of a namespace: each version names the newest checkpoint, so
  the latest checkpoint is one read, whatever the thread's length.

Key parts are percent-encoded, so no thread, namespace or channel name can make two
keys collide. State blobs are framed (`pack`) and compressed by the engine's codec.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

CHECKPOINT = "lg:c/"
VALUE = "lg:v/"
WRITES = "lg:w/"
HEAD = "lg:h/"
SAVER_PREFIX = "lg:"  # every key above, and nothing the adapter or a Runtime writes


def _q(text: str) -> str:
    return quote(text, safe="")


def checkpoint_key(ns: str, checkpoint_id: str) -> str:
    return f"{CHECKPOINT}{_q(ns)}/{_q(checkpoint_id)}"


def value_key(ns: str, channel: str, version: object) -> str:
    return f"{VALUE}{_q(ns)}/{_q(channel)}/{_q(str(version))}"


def writes_key(ns: str, checkpoint_id: str) -> str:
    return f"{WRITES}{_q(ns)}/{_q(checkpoint_id)}"


def head_key(ns: str) -> str:
    return f"{HEAD}{_q(ns)}"


def node_id(thread_id: str, key: str) -> str:
    return f"{thread_id}/{key}"


def key_of(thread_id: str, node_id: str) -> str | None:
    """The key of one of the saver's nodes of `thread_id`, or None for any other node."""
    prefix = f"{thread_id}/"
    if node_id.startswith(prefix) and node_id[len(prefix) :].startswith(SAVER_PREFIX):
        return node_id[len(prefix) :]
    return None


def pack(parts: Sequence[bytes]) -> bytes:
    """Length-prefixed parts: a frame any byte string fits in."""
    out = bytearray()
    for part in parts:
        out += len(part).to_bytes(4, "big")
        out += part
    return bytes(out)


def unpack(blob: bytes) -> list[bytes]:
    parts = []
    at = 0
    while at < len(blob):
        size = int.from_bytes(blob[at : at + 4], "big")
        end = at + 4 + size
        if size < 0 or end > len(blob) or at + 4 > len(blob):
            raise ValueError(f"a frame part of {size} bytes runs past the end ({len(blob)})")
        parts.append(blob[at + 4 : end])
        at = end
    return parts
