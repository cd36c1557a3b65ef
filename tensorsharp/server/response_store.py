"""Stored responses (Responses API, store: true): each with its input items and its turns of the
conversation, so previous_response_id continues it and GET / DELETE find it."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from tensorsharp.server.protocol.common import Image


@dataclass(eq=False)
class Stored:
    response: dict                   # the response object, as last sent
    items: list[dict]                # its input items, as GET .../input_items lists them
    turns: list[dict]                # chat turns its input and output added to the conversation
    images: list[Image] = field(default_factory=list)   # the images of those turns, in order
    parent: Stored | None = None     # the response it continued; held here, so a chain outlives
                                     # its earlier responses' eviction or deletion from the store

    @property
    def id(self) -> str:
        return self.response["id"]

    def chain(self) -> list[Stored]:
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]

    def history(self) -> tuple[list[dict], list[Image]]:
        """The conversation up to and including this response: its turns (instructions are not
        carried over) and their images."""
        turns, images = [], []
        for node in self.chain():
            turns += node.turns
            images += node.images
        return turns, images

    @property
    def size(self) -> int:
        """Bytes this entry keeps alive, roughly: the images and text of its whole chain (counted
        again for each entry sharing a chain, which errs on the safe side)."""
        turns, images = self.history()
        return sum(len(i.data) for i in images) + sum(len(str(t.get("content") or "")) for t in turns)

    @property
    def conversation(self) -> str:
        """The first response's id: the KV slot affinity of every turn of the conversation."""
        return self.chain()[0].id


class ResponseStore:
    """At most `limit` responses keeping at most `max_bytes` alive; storing one more forgets the
    least recently used (the newest is kept whatever its size)."""

    def __init__(self, limit: int = 1024, max_bytes: int = 512 << 20):
        self.limit = limit
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Stored, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, stored: Stored) -> None:
        size = stored.size
        with self._lock:
            self._pop(stored.id)
            self._items[stored.id] = (stored, size)
            self._bytes += size
            while len(self._items) > 1 and (len(self._items) > self.limit or self._bytes > self.max_bytes):
                self._pop(next(iter(self._items)))

    def _pop(self, rid: str) -> bool:
        entry = self._items.pop(rid, None)
        if entry is not None:
            self._bytes -= entry[1]
        return entry is not None

    def get(self, rid: str) -> Stored | None:
        with self._lock:
            entry = self._items.get(rid)
            if entry is None:
                return None
            self._items.move_to_end(rid)
            return entry[0]

    def delete(self, rid: str) -> bool:
        with self._lock:
            return self._pop(rid)
