"""The replica: one model and its scheduler inside a Ray actor, serving requests sent as Wire and
streaming each one's engine events back in batches (a Ray streaming generator per request), for
every front end that joined it; the last front end to leave ends it, and a replica no front end
has been heard from for a lease ends itself.

This module does not import Ray: the front end wraps Replica with ray.remote, so the class stays
plain Python that a test or another process can also drive directly.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from tensorsharp.engine.constraint import Constraint
from tensorsharp.cluster.router import prefix_hashes
from tensorsharp.engine.request import Done, Failed, GenerationRequest
from tensorsharp.errors import TensorSharpError


@dataclass
class Wire:
    """A GenerationRequest as it crosses processes: the constraint (which holds the front end's
    tokenizer) travels as its grammar, the request's group as a key, and rid names it for cancel."""
    rid: str
    request: GenerationRequest      # constraint None, group a str or None
    grammar: str | None = None

    @classmethod
    def of(cls, rid: str, request: GenerationRequest, group_key: str | None) -> "Wire":
        grammar = request.constraint.grammar if request.constraint is not None else None
        return cls(rid, dataclasses.replace(request, constraint=None, group=group_key), grammar)

    def rebuilt(self, tokenizer) -> GenerationRequest:
        """The request as this replica's scheduler takes it (a fresh constraint on its own tokenizer)."""
        if self.grammar is None:
            return self.request
        return dataclasses.replace(self.request, constraint=Constraint(tokenizer, self.grammar))


# Cancels that arrived before their request (both are in flight at once): kept this long.
EARLY_CANCELS = 1024
# A front end polls its replicas twice a second; one not heard from for this long is gone.
LEASE_SECONDS = 30.0


class FrontEnds:
    """The front ends using a replica, by when each was last heard from. Pure bookkeeping; the
    replica's lock guards it."""

    def __init__(self, lease: float, clock: Callable[[], float] = time.monotonic):
        self.lease = lease
        self.clock = clock
        self._heard: dict[str, float] = {}
        self._last = clock()   # a replica nobody joins counts from its start

    def heard(self, front: str) -> None:
        self._heard[front] = self._last = self.clock()

    def leave(self, front: str) -> bool:
        """front is done with the replica: True if no other front end uses it (within the lease)."""
        self._heard.pop(front, None)
        return not self.live()

    def live(self) -> list[str]:
        now = self.clock()
        for front in [f for f, t in self._heard.items() if now - t > self.lease]:
            del self._heard[front]
        return sorted(self._heard)

    def orphaned(self) -> bool:
        """No front end has been heard from for a lease: they all stopped without leaving."""
        return not self.live() and self.clock() - self._last > self.lease


class Replica:
    """Loads the model as the single-process server does (ServedModel.load with the same options).
    end: how the replica ends itself once orphaned (Ray's actor kill); None: it never does."""

    def __init__(self, spec, load_kw: dict, stall_seconds: float = 120.0, lease_seconds: float = LEASE_SECONDS,
                 end: Callable[[], None] | None = None):
        from tensorsharp.server.model import ServedModel   # the server's loader, not its routes
        self.served = ServedModel.load(str(spec.path), spec=spec, **load_kw)
        self.stall_seconds = stall_seconds
        self.fronts = FrontEnds(lease_seconds)
        self.ending = False   # the last front end left: it is being ended, and takes no one else
        self._handles: dict[str, object] = {}
        self._early: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        if end is not None:
            threading.Thread(target=self._watch, args=(end,), daemon=True, name="replica-orphan-watch").start()

    def generate(self, wire: Wire):
        """Lists of events until the request's Done or Failed (a refusal at submit is a Failed)."""
        events: queue.SimpleQueue = queue.SimpleQueue()
        sched = self.served.scheduler
        try:
            handle = sched.submit(wire.rebuilt(self.served.tokenizer), events.put)
        except (TensorSharpError, ValueError) as e:   # queue full, bad sampling options, bad grammar
            yield [Failed(e)]
            return
        with self._lock:
            self._handles[wire.rid] = handle
            early = self._early.pop(wire.rid, 0) is None
        if early:
            handle.cancel()
        try:
            while True:
                batch = [events.get()]
                # Whatever else is ready goes in the same object: one Ray message per few tokens
                # when the engine outpaces the stream, not one per token.
                while True:
                    try:
                        batch.append(events.get_nowait())
                    except queue.Empty:
                        break
                yield batch
                if isinstance(batch[-1], (Done, Failed)):
                    return
        finally:
            handle.cancel()   # a no-op after Done; ends the request if the stream was dropped
            with self._lock:
                self._handles.pop(wire.rid, None)

    def cancel(self, rid: str) -> None:
        with self._lock:
            handle = self._handles.get(rid)
            if handle is None:
                self._early[rid] = None
                while len(self._early) > EARLY_CANCELS:
                    self._early.popitem(last=False)
        if handle is not None:
            handle.cancel()

    def join(self, front: str) -> dict | None:
        """front uses this replica from now on: its report, or None if the replica is ending (the
        front end then waits for it to go and starts a new one)."""
        with self._lock:
            if self.ending:
                return None
            self.fronts.heard(front)
        return self.report()

    def leave(self, front: str) -> bool:
        """front is done with this replica: True if it was the last, and must now end it. What
        front still had running here is cancelled: nobody is left to read it."""
        with self._lock:
            self.ending = self.ending or self.fronts.leave(front)
            orphans = [h for rid, h in self._handles.items() if rid.startswith(front + "/")]
        for handle in orphans:
            handle.cancel()
        return self.ending

    def report(self, front: str | None = None) -> dict:
        """Load, KV slots and health, for routing and for the front end's aggregate views; pid
        tells the front end that the actor was restarted (its caches are then empty). A report
        asked for by a front end keeps its place (after a restart, gives it back)."""
        with self._lock:
            if front is not None and not self.ending:
                self.fronts.heard(front)
            fronts, ending = self.fronts.live(), self.ending
        sched = self.served.scheduler
        slots = [(s.busy, list(s.tokens)) for s in sched.slots]
        held = {h for _, keys in slots for h in prefix_hashes([-1 if isinstance(k, tuple) else k for k in keys])}
        return {**sched.status(), "pid": os.getpid(), "n_ctx": sched.n_ctx, "kv_bytes": sched.cache.nbytes,
                "slots": [(busy, bool(keys)) for busy, keys in slots], "held": sorted(held),
                "cached_tokens": int(sched.cache.length.sum()), "stalled": sched.stalled(self.stall_seconds),
                "fronts": fronts, "ending": ending}

    def _watch(self, end: Callable[[], None]) -> None:
        while True:
            time.sleep(self.fronts.lease / 4)
            with self._lock:
                if self.fronts.orphaned():
                    self.ending = True
            if self.ending:
                end()
                return

    def close(self) -> None:
        self.served.close()
