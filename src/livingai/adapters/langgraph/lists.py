"""The lists a saver stored or read lately, kept serialised item by item.

A chat's message list grows by a message or two a step. Its new version is compared,
item by item, with the newest version of the same channel, so only the added items are
stored (with the key of the version they extend); and a read of a recent version, the
usual case (LangGraph reads the checkpoint it has just written), needs no store reads.
Versions are immutable, so an entry is never stale; the memory is bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

Items = list[tuple[str, bytes]]  # each item as LangGraph's serializer typed it
Slot = tuple[str, str, str]  # (thread, namespace, channel)


class Stored(NamedTuple):
    node_id: str  # the id a value node of this version has (or would have)
    items: Items
    depth: int  # how many versions back the nearest whole copy is
    holder: str | None  # the checkpoint whose node holds this version
    version: str
    size: int


class RecentLists:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._by_id: OrderedDict[str, Stored] = OrderedDict()
        self._newest: dict[Slot, str] = {}
        self._bytes = 0

    def get(self, node_id: str) -> Stored | None:
        found = self._by_id.get(node_id)
        if found is not None:
            self._by_id.move_to_end(node_id)
        return found

    def newest(self, slot: Slot) -> Stored | None:
        """The version a new one of this channel is compared with."""
        node_id = self._newest.get(slot)
        return None if node_id is None else self.get(node_id)

    def put(
        self,
        node_id: str,
        items: Items,
        depth: int,
        holder: str | None,
        version: str,
        slot: Slot | None = None,
    ) -> None:
        """Keep a version; with `slot`, as the one the channel's next version extends."""
        if slot is not None:
            self._newest[slot] = node_id
        if node_id in self._by_id:
            return
        size = sum(len(data) + 16 for _, data in items)
        if size > self.max_bytes // 4:
            return  # too big to keep: its next version is stored whole
        self._by_id[node_id] = Stored(node_id, items, depth, holder, version, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, oldest = self._by_id.popitem(last=False)
            self._bytes -= oldest.size

    def forget_slot(self, slot: Slot) -> None:
        self._newest.pop(slot, None)

    def forget(self, node_ids: set[str]) -> None:
        for node_id in node_ids & self._by_id.keys():
            self._bytes -= self._by_id.pop(node_id).size
        for slot in [s for s, n in self._newest.items() if n in node_ids]:
            del self._newest[slot]

    def forget_thread(self, thread: str) -> None:
        self.forget({n for n in self._by_id if n.startswith(f"{thread}/")})
        for slot in [s for s in self._newest if s[0] == thread]:
            del self._newest[slot]
