"""Which replica serves a request: its session's, else the one holding the longest known prefix of
its prompt (if that covers more than half of it), else the least loaded; an affinity never sends
work to a replica that is more than max_imbalance requests busier than the least loaded one, and
nothing goes to a replica known dead.

What a replica holds is known two ways: from the requests this front end placed there (at once),
and from the replica's own report of its KV slots (every poll), which is how front ends sharing
replicas learn of each other's conversations.

Pure bookkeeping (no Ray): the front end's pump threads and its hub both call it, hence the lock.
"""
from __future__ import annotations

import hashlib
import threading
from collections import Counter, OrderedDict

import numpy as np

# Tokens per hashed prompt block. Small enough that a short first turn (a chat template's system
# prompt is ~20 tokens) still has blocks of its own to match its follow-up on.
BLOCK = 16


def prefix_hashes(ids: list[int], block: int = BLOCK) -> list[int]:
    """Hashes of the prompt's leading whole blocks, each chained to the ones before it, so equal
    hashes at position k mean equal prefixes of k blocks. A digest rather than hash(): replicas
    hash what their slots hold in other processes, on other hosts, for front ends to compare."""
    data = np.asarray(ids, dtype="<i8").tobytes()
    out, h = [], b""
    step = 8 * block
    for start in range(0, len(data) - step + 1, step):
        h = hashlib.blake2b(h + data[start:start + step], digest_size=8).digest()
        out.append(int.from_bytes(h, "little"))
    return out


class Router:
    """Routing state of n replicas. Replica indices are stable; a restarted replica keeps its index
    but is forgotten (its KV cache is empty)."""

    def __init__(self, n: int, max_imbalance: int = 2, block: int = BLOCK, max_blocks: int = 1 << 16,
                 max_sessions: int = 4096):
        self.n = n
        self.block = block
        self.max_imbalance = max_imbalance
        self.max_blocks = max_blocks        # remembered prefix hashes per replica (LRU)
        self.max_sessions = max_sessions
        self.alive = [True] * n
        self.inflight = [0] * n             # this front end's requests submitted and not ended
        self.others = [0] * n               # queue + active there that are not this front end's, as last reported
        self._blocks = [OrderedDict() for _ in range(n)]   # prefix hashes placed or ended there (LRU)
        self._held = [frozenset()] * n                      # prefix hashes in its slots, as last reported
        self._sessions: OrderedDict[str, int] = OrderedDict()
        self.decisions = Counter()          # "session" | "prefix" | "load": how requests were placed
        self.placed = [0] * n               # requests placed on each replica, ever
        self._lock = threading.Lock()

    def load(self, i: int) -> int:
        return self.inflight[i] + self.others[i]

    def reported(self, i: int, busy: int, held=None) -> None:
        """Replica i says it holds busy requests (queued and active) from every front end, and
        (held) the prefix hashes of what its KV slots hold."""
        with self._lock:
            self.others[i] = max(0, busy - self.inflight[i])
            if held is not None:
                self._held[i] = frozenset(held)

    def pick(self, prompt: list[int], session: str | None = None, exclude: frozenset = frozenset()) -> int | None:
        """The replica for a request (counted in flight there until ended()), or None if none is up."""
        hashes = prefix_hashes(prompt, self.block)
        with self._lock:
            up = [i for i in range(self.n) if self.alive[i] and i not in exclude]
            if not up:
                return None
            least = min(self.load(i) for i in up)

            def near(i: int) -> bool:
                return self.load(i) <= least + self.max_imbalance
            choice, why = None, "load"
            bound = self._sessions.get(session) if session is not None else None
            if bound in up and near(bound):
                choice, why = bound, "session"
            if choice is None:
                best, depth = None, 0
                for i in up:
                    d = self._depth(i, hashes)
                    if d > depth or (d == depth and best is not None and self.load(i) < self.load(best)):
                        best, depth = i, d
                # A shorter match is what many conversations share (a system prompt): worth less
                # than spreading them, and every replica soon holds it anyway.
                if 2 * depth > len(hashes) and near(best):
                    choice, why = best, "prefix"
            if choice is None:
                choice = min(up, key=lambda i: (self.load(i), self.inflight[i], i))
            self.decisions[why] += 1
            self.placed[choice] += 1
            self.inflight[choice] += 1
            if session is not None:
                self._sessions[session] = choice
                self._sessions.move_to_end(session)
                while len(self._sessions) > self.max_sessions:
                    self._sessions.popitem(last=False)
            self._remember(choice, hashes)
            return choice

    def _depth(self, i: int, hashes: list[int]) -> int:
        """Leading blocks of the prompt that replica i is known to hold."""
        known, held, d = self._blocks[i], self._held[i], 0
        for h in hashes:
            if h not in known and h not in held:
                break
            d += 1
        return d

    def _remember(self, i: int, hashes: list[int]) -> None:
        known = self._blocks[i]
        for h in hashes:
            known[h] = None
            known.move_to_end(h)
        while len(known) > self.max_blocks:
            known.popitem(last=False)

    def ended(self, i: int, tokens: list[int] | None = None) -> None:
        """A request placed on i ended; tokens: what i's KV cache now holds for it (prompt and
        reply), which a follow-up turn's prompt starts with."""
        with self._lock:
            self.inflight[i] = max(0, self.inflight[i] - 1)
            if tokens:
                self._remember(i, prefix_hashes(tokens, self.block))

    def down(self, i: int) -> None:
        """i is dead or unreachable: no request goes there until up()."""
        with self._lock:
            self.alive[i] = False

    def up(self, i: int, fresh: bool) -> None:
        """i answers again; fresh: it restarted, so it holds none of the prefixes it held."""
        with self._lock:
            self.alive[i] = True
            if fresh:
                self._blocks[i].clear()
                self._held[i] = frozenset()
                for s in [s for s, r in self._sessions.items() if r == i]:
                    del self._sessions[s]
