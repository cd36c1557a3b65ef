"""Web UI chat sessions: each keeps its message history; its id is also its KV slot's key."""
from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class Session:
    id: str
    history: list[dict] = field(default_factory=list)   # role/content(/tool_calls) turns so far
    busy: bool = False                                   # a reply is being generated
    turn: object = None                                  # that reply's turn, to cancel it


def _turn(m: dict) -> tuple:
    return m.get("role"), m.get("content") or ""


def new_turns(history: list[dict], sent: list[dict]) -> list[dict]:
    """The messages of a request that the session does not hold yet: a client may send the whole
    conversation each time or only its new turn, and both must give the same prompt."""
    n = len(history)
    if n and len(sent) > n and [_turn(m) for m in sent[:n]] == [_turn(m) for m in history]:
        return sent[n:]
    return sent


class Sessions:
    """At most `limit` sessions; creating one more forgets the least recently used."""

    def __init__(self, limit: int = 256):
        self.limit = limit
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self) -> Session:
        s = Session(uuid.uuid4().hex)
        with self._lock:
            self._items[s.id] = s
            while len(self._items) > self.limit:
                self._items.popitem(last=False)
        return s

    def get(self, sid: str) -> Session | None:
        with self._lock:
            s = self._items.get(sid)
            if s is not None:
                self._items.move_to_end(sid)
            return s

    def delete(self, sid: str) -> bool:
        with self._lock:
            return self._items.pop(sid, None) is not None
