"""Channel values as a checkpoint's node stores them: one entry per channel whose version
the checkpoint introduced.

An entry is EMPTY (the channel has no value at that version), SINGLE (one serialised
value) or LIST (serialised items: all of them, or only those added to an earlier version
of the same channel, named by the checkpoint holding it and its version). A checkpoint
whose value a kept checkpoint still needs may be deleted by retention; the value then
moves to a node of its own, whole (see saver._keep_only), which reads fall back to.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layout import pack, unpack

VALUE_FORMAT = b"lgv1"  # a value node of its own: the format, then one entry
EMPTY, SINGLE, LIST = b"E", b"V", b"L"

Items = list[tuple[str, bytes]]  # each item as LangGraph's serializer typed it


@dataclass(frozen=True)
class Entry:
    channel: str
    kind: bytes
    items: Items  # SINGLE: the value; LIST: the items (after those of `base`)
    base: tuple[str, str] | None = None  # (holder checkpoint id, version) a LIST extends
    count: int = 0  # the items of `base`

    def pack(self) -> bytes:
        parts = [self.channel.encode(), self.kind]
        if self.kind == LIST:
            holder, version = self.base or ("", "")
            parts += [holder.encode(), version.encode(), str(self.count).encode()]
        if self.kind != EMPTY:
            parts += [part for kind, data in self.items for part in (kind.encode(), data)]
        return pack(parts)

    @classmethod
    def unpack(cls, blob: bytes) -> Entry:
        parts = unpack(blob)
        if len(parts) < 2:
            raise ValueError("a value entry is too short")
        channel, kind = parts[0].decode(), parts[1]
        if kind == EMPTY and len(parts) == 2:
            return cls(channel, kind, [])
        if kind == SINGLE and len(parts) == 4:
            return cls(channel, kind, [(parts[2].decode(), parts[3])])
        if kind == LIST and len(parts) >= 5 and len(parts) % 2 == 1:
            holder, version, count = parts[2].decode(), parts[3].decode(), int(parts[4])
            items = [(parts[i].decode(), parts[i + 1]) for i in range(5, len(parts), 2)]
            return cls(channel, kind, items, (holder, version) if holder else None, count)
        raise ValueError(f"the value entry of channel {channel!r} has an unknown layout")
