"""The replica: one model and its scheduler inside a Ray actor, serving requests sent as Wire and
streaming each one's engine events back in batches (a Ray streaming generator per request).

This module does not import Ray: the front end wraps Replica with ray.remote, so the class stays
plain Python that a test or another process can also drive directly.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass

from tensorsharp.engine.constraint import Constraint
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


class Replica:
    """Loads the model as the single-process server does (ServedModel.load with the same options)."""

    def __init__(self, spec, load_kw: dict, stall_seconds: float = 120.0):
        from tensorsharp.server.model import ServedModel   # the server's loader, not its routes
        self.served = ServedModel.load(str(spec.path), spec=spec, **load_kw)
        self.stall_seconds = stall_seconds
        self._handles: dict[str, object] = {}
        self._early: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

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

    def report(self) -> dict:
        """Load, KV slots and health, for routing and for the front end's aggregate views; pid
        tells the front end that the actor was restarted (its caches are then empty)."""
        sched = self.served.scheduler
        return {**sched.status(), "pid": os.getpid(), "n_ctx": sched.n_ctx, "kv_bytes": sched.cache.nbytes,
                "slots": [(s.busy, bool(s.tokens)) for s in sched.slots],
                "cached_tokens": int(sched.cache.length.sum()), "stalled": sched.stalled(self.stall_seconds)}

    def close(self) -> None:
        self.served.close()
