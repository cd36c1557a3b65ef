"""Embedding requests through the engine: each input is a scheduler request whose prompt is
evaluated and its final hidden states pooled, batched with whatever else the engine runs."""
from __future__ import annotations

import time

import gevent
import numpy as np

from tensorsharp.engine.request import Embedded, Failed, GenerationRequest
from tensorsharp.server.bridge import EngineEvents
from tensorsharp.server.errors import ApiError, from_engine
from tensorsharp.server.model import ServedModel
from tensorsharp.server.protocol.embeddings import EmbedRequest, shape


def _ids(served: ServedModel, req: EmbedRequest) -> list[list[int]]:
    """Token ids of each input (BOS and EOS as the model's tokenizer adds them), cut to the
    context when the request allows it."""
    limit = served.n_ctx - 1
    out = []
    for i, item in enumerate(req.inputs):
        ids = served.tokenizer.encode(item, add_special=True, parse_special=False) if isinstance(item, str) \
            else list(item)
        if len(ids) > limit:
            if not req.truncate:
                raise ApiError(400, f"input {i} is {len(ids)} tokens but the context holds {limit}",
                               param="input", code="context_length_exceeded")
            ids = ids[:limit]
        out.append(ids)
    return out


def embed(served: ServedModel, req: EmbedRequest, environ: dict | None = None) -> tuple[list[np.ndarray], int, int]:
    """(vectors in input order, prompt tokens, nanoseconds taken)."""
    if served.pooling == "rank":
        raise ApiError(400, f"model {served.name} is a reranker; it makes no embeddings", param="model")
    t0 = time.monotonic_ns()
    for item in req.inputs:
        if not isinstance(item, str):
            try:
                served.check_ids(item)
            except ValueError as e:
                raise ApiError(400, str(e), param="input") from None
    # Tokenizing a long batch of texts would stall every other request on the hub.
    ids = gevent.get_hub().threadpool.apply(_ids, (served, req))
    group = object()   # one request's inputs share one place in the queue and one fair share
    requests = [GenerationRequest(i, 0, reuse_prefix=False, pooling=served.pooling, group=group) for i in ids]
    vectors: list = [None] * len(requests)
    try:
        events = EngineEvents(served.scheduler, requests, environ)
    except Exception as e:
        raise from_engine(e) from None
    try:
        for index, event in events:
            if isinstance(event, Failed):
                raise from_engine(event.error)
            if isinstance(event, Embedded):
                vectors[index] = event.vector
    finally:
        events.close()
    if any(v is None for v in vectors):
        raise ApiError(499, "the request was cancelled")
    return shape(vectors, req.dimensions, req.normalize), sum(map(len, ids)), time.monotonic_ns() - t0
