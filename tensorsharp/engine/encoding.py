"""The engine thread of an encoder model (BERT family): embedding requests only, queued FIFO and
run as whole sequences, as many as fit n_batch tokens per encoder pass.

It takes requests and sends events as the Scheduler does (submit(request, sink) -> Handle;
Queued, Started, Embedded, Done or Failed), so the server's EngineEvents drives both."""
from __future__ import annotations

import logging
import time
from collections import deque

import numpy as np

from tensorsharp.engine.request import (Done, Embedded, Failed, GenerationRequest, Handle, Queued, QueueFullError,
                                        Sink, Started, check_pooling)
from tensorsharp.engine.thread import EngineThread, engine_error, fair_group
from tensorsharp.errors import ContextFullError, TensorSharpError

log = logging.getLogger(__name__)


class EncoderScheduler(EngineThread):
    """Serves pooling GenerationRequests on one engine thread over an Encoder."""

    parallel = 1   # one encoder pass at a time; a pass holds many requests

    def __init__(self, encoder, n_ctx: int = 0, n_batch: int = 512, max_queue: int = 16, n_threads: int = 0):
        if n_batch < 1:
            raise ValueError("n_batch must be at least 1")
        if max_queue < 0:
            raise ValueError("max_queue must not be negative")
        super().__init__()
        self.encoder = encoder
        train = encoder.hparams.n_ctx_train
        self._n_ctx = min(n_ctx, train) if n_ctx > 0 else train
        self.n_batch = n_batch
        self.max_queue = max_queue
        self.n_threads = n_threads
        self._waiting: deque = deque()    # [handle, submit time, queue position told]
        self._running = 0                 # requests in the current pass
        self._processed = 0

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    # -- caller side (any thread) --------------------------------------------------------------
    def submit(self, request: GenerationRequest, sink: Sink) -> Handle:
        """Queues an embedding request; ValueError for anything else (an encoder generates nothing),
        QueueFullError when the queue is full."""
        if request.pooling is None:
            raise ValueError("this model only embeds: it cannot generate text")
        check_pooling(request.pooling)
        if request.images:
            raise ValueError("this model takes no images")
        handle = Handle(request, sink, self._kick)
        with self._mutex:
            if self._closing:
                raise TensorSharpError("the scheduler is shut down")
            queued = {fair_group(w[0].request) for w in self._waiting}
            if fair_group(request) not in queued and len(queued) >= self.max_queue + (self._running == 0):
                raise QueueFullError(f"the queue is full ({self.max_queue} requests waiting)")
            self._waiting.append([handle, time.monotonic_ns(), 0])
        self._kick()
        return handle

    def status(self) -> dict:
        with self._mutex:
            return {"pending": len(self._waiting), "active": self._running, "parallel": self.parallel,
                    "capacity": self.max_queue, "processed": self._processed}

    def _busy(self) -> bool:
        return bool(self._running or self._waiting)

    # -- engine thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                self._beat = time.monotonic()
                with self._mutex:
                    if self._closing:
                        return
                    batch, events = self._take()
                for handle, event in events:
                    self._send(handle, event)
                if batch:
                    self._encode(batch)
                else:
                    self._wake.acquire(timeout=1.0)
        finally:
            self._beat = None
            with self._mutex:
                waiting, self._waiting = list(self._waiting), deque()
            stopped = TensorSharpError("the server is shutting down")
            for w in waiting:
                self._send(w[0], Failed(stopped))
            self._exited.release()

    def _take(self) -> tuple[list, list]:
        """Under the mutex: the requests of the next pass (FIFO, whole sequences, up to n_batch
        tokens but at least one request), and the events of those ended or still waiting."""
        events, batch, tokens = [], [], 0
        while self._waiting:
            handle, submitted, _ = self._waiting[0]
            n = len(handle.request.prompt)
            now = time.monotonic_ns()
            if handle.cancelled:
                events.append((handle, Done("cancelled", n, 0, 0, 0, 0, now - submitted, now - submitted)))
            elif n == 0:
                events.append((handle, Failed(TensorSharpError("the prompt has no tokens"))))
            elif n > self._n_ctx:
                events.append((handle, Failed(ContextFullError(
                    f"the input is {n} tokens but the model takes at most {self._n_ctx}"))))
            elif not all(0 <= t < self.encoder.hparams.n_vocab for t in handle.request.prompt):
                events.append((handle, Failed(TensorSharpError("a token id is outside the vocabulary"))))
            elif batch and tokens + n > self.n_batch:
                break
            else:
                batch.append((handle, submitted))
                tokens += n
                self._waiting.popleft()
                continue
            self._waiting.popleft()
            self._processed += 1
        self._running = len(batch)
        for i, w in enumerate(self._waiting, start=1):
            if w[2] != i:   # the last position told
                w[2] = i
                events.append((w[0], Queued(i)))
        return batch, events

    def _encode(self, batch: list) -> None:
        t_admit = time.monotonic_ns()
        for handle, _ in batch:
            self._send(handle, Started(len(handle.request.prompt), 0))
        try:
            states = self.encoder.encode([h.request.prompt for h, _ in batch], self.n_threads)
            vectors = [self.encoder.pool(s, h.request.pooling) for s, (h, _) in zip(states, batch)]
        except Exception as e:   # a bad input or a bug fails this pass's requests, not the engine
            log.exception("encoder pass failed")
            error = engine_error(e)
            results = [Failed(error)] * len(batch)
        else:
            now = time.monotonic_ns()
            results = [(Embedded(np.asarray(v, dtype=np.float32)),
                        Done("stop", len(h.request.prompt), 0, 0, now - t_admit, 0, now - s, t_admit - s))
                       for v, (h, s) in zip(vectors, batch)]
        with self._mutex:
            self._running = 0
            self._processed += len(batch)
        for (handle, _), result in zip(batch, results):
            for event in result if isinstance(result, tuple) else (result,):
                self._send(handle, event)

    def _send(self, handle: Handle, event) -> None:
        try:
            handle.sink(event)
        except Exception:  # a broken consumer must not take the engine down with it
            log.exception("request sink failed; cancelling the request")
            handle.cancelled = True
