"""Embedding requests and responses of both dialects: OpenAI /v1/embeddings, Ollama /api/embed and
its legacy /api/embeddings."""
from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.fields import Fields

MAX_INPUTS = 2048   # OpenAI's limit on the inputs of one request


@dataclass
class EmbedRequest:
    model: str
    inputs: list            # each a text or a list of token ids
    dimensions: int | None  # keep the first n values (Matryoshka truncation), then normalise
    normalize: bool         # unit length (OpenAI, /api/embed); the legacy Ollama route returns raw vectors
    truncate: bool = False  # cut an input longer than the context instead of refusing it
    encoding: str = "float"


def _is_ids(value) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def _inputs(f: Fields, key: str, ids_allowed: bool) -> list:
    """A string, an array of strings, and (OpenAI) an array of token ids or an array of those."""
    value = f.raw(key)
    if value is None:
        raise ApiError(400, f"'{key}' is required", param=key)
    if isinstance(value, str) or (ids_allowed and _is_ids(value) and value):
        items = [value]
    elif isinstance(value, list) and all(isinstance(v, str) or (ids_allowed and _is_ids(v)) for v in value):
        items = list(value)
    else:
        want = "a string, an array of strings, an array of token ids or an array of such arrays" if ids_allowed \
            else "a string or an array of strings"
        raise ApiError(400, f"'{key}' must be {want}", param=key)
    if not items:
        raise ApiError(400, f"'{key}' must not be empty", param=key)
    if len(items) > MAX_INPUTS:
        raise ApiError(400, f"'{key}' holds {len(items)} inputs; at most {MAX_INPUTS} per request", param=key)
    for i, item in enumerate(items):
        if len(item) == 0:
            raise ApiError(400, f"'{key}[{i}]' is empty; an empty input has no embedding", param=key)
    return items


def parse_openai(body: dict) -> EmbedRequest:
    f = Fields(body)
    encoding = f.str("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise ApiError(400, f"'encoding_format' must be 'float' or 'base64', got {encoding!r}",
                       param="encoding_format")
    return EmbedRequest(f.str("model", required=True), _inputs(f, "input", ids_allowed=True),
                        f.int("dimensions", lo=1), normalize=True, encoding=encoding)


def parse_ollama(body: dict) -> EmbedRequest:
    f = Fields(body)
    return EmbedRequest(f.str("model", required=True), _inputs(f, "input", ids_allowed=False),
                        f.int("dimensions", lo=1), normalize=True, truncate=f.bool("truncate", True))


def parse_ollama_legacy(body: dict) -> EmbedRequest:
    """/api/embeddings: one `prompt`, whose vector comes back as the model gives it (not normalised)."""
    f = Fields(body)
    prompt = f.str("prompt", required=True)
    if not prompt:
        raise ApiError(400, "'prompt' is empty; an empty input has no embedding", param="prompt")
    return EmbedRequest(f.str("model", required=True), [prompt], None, normalize=False, truncate=True)


def shape(vectors: list[np.ndarray], dimensions: int | None, normalize: bool) -> list[np.ndarray]:
    """Truncated to `dimensions` (which must not exceed the model's width) and made unit length."""
    out = []
    for v in vectors:
        if dimensions is not None:
            if dimensions > len(v):
                raise ApiError(400, f"'dimensions' is {dimensions} but the model's embeddings have {len(v)}",
                               param="dimensions")
            v = v[:dimensions]
        if normalize:
            norm = float(np.linalg.norm(v.astype(np.float64)))
            v = v / norm if norm > 0 else v
        out.append(np.asarray(v, dtype=np.float32))
    return out


def openai_response(model: str, vectors: list[np.ndarray], encoding: str, prompt_tokens: int) -> dict:
    def value(v: np.ndarray):
        # The official clients decode base64 as little-endian float32.
        return base64.b64encode(v.astype("<f4").tobytes()).decode() if encoding == "base64" else v.tolist()
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": value(v)} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def ollama_response(model: str, vectors: list[np.ndarray], prompt_tokens: int, total_ns: int, load_ns: int) -> dict:
    return {"model": model, "embeddings": [v.tolist() for v in vectors], "total_duration": total_ns,
            "load_duration": load_ns, "prompt_eval_count": prompt_tokens}


def ollama_legacy_response(vector: np.ndarray) -> dict:
    return {"embedding": vector.tolist()}
