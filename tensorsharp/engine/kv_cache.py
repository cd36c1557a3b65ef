"""The KV cache of a fixed number of sequence slots, owned in numpy and filled by C: f16, or q8_0 /
q4_0 (GGML's 8- and 4-bit blocks, llama.cpp's `--cache-type-k/v` and Ollama's `OLLAMA_KV_CACHE_TYPE`),
which hold a position in 53% / 28% of the bytes for some loss of precision."""
from __future__ import annotations

import numpy as np

from tensorsharp import kernels
from tensorsharp.config import KV_CACHE_TYPES
from tensorsharp.errors import ContextFullError
from tensorsharp.gguf.types import tensor_type
from tensorsharp.models.base import Transformer


def common_prefix(a: list, b: list) -> int:
    """How many leading tokens two sequences share: what a slot's cache holds of a new sequence."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def row_bytes(cache_type: str, head_dim: int) -> int:
    """Bytes one position of one KV head takes in a cache of this type."""
    if cache_type not in KV_CACHE_TYPES:
        raise ValueError(f"KV cache type {cache_type!r} is not one of {', '.join(KV_CACHE_TYPES)}")
    n = kernels.cache_row_bytes(cache_type, head_dim)
    if not n:
        raise ValueError(f"a {cache_type} KV cache needs a head size that is a multiple of 32 up to 256; "
                         f"this model's is {head_dim}")
    return n


def bytes_from_f16(f16_bytes: int, cache_type: str) -> int:
    """What a cache of this type takes where an f16 one takes f16_bytes."""
    return f16_bytes * row_bytes(cache_type, 64) // row_bytes("f16", 64)


class KVCache:
    """Per slot, positions [0, length) hold valid K/V; writes past n_ctx are refused."""

    def __init__(self, model: Transformer, n_ctx: int, n_seq: int = 1, cache_type: str = "f16"):
        hp = model.hparams
        if n_ctx <= 0 or n_seq <= 0:
            raise ValueError("n_ctx and n_seq must be positive")
        shape = (n_seq, hp.n_layer, hp.n_head_kv, n_ctx, row_bytes(cache_type, hp.head_dim))
        self.type = cache_type
        self.type_id = tensor_type(cache_type.upper()).id   # as the C side takes it
        self.k = np.zeros(shape, dtype=np.uint8)  # (n_seq, n_layer, n_kv_head, n_ctx, row bytes)
        self.v = np.zeros(shape, dtype=np.uint8)  # same layout as k
        self.length = np.zeros(n_seq, dtype=np.int64)  # (n_seq) valid positions per slot
        self.n_ctx = n_ctx
        self.n_seq = n_seq

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def reserve(self, seq: int, n: int) -> int:
        """Claims the next n positions of a slot; returns the first. ContextFullError if they do not fit."""
        start = int(self.length[seq])
        if start + n > self.n_ctx:
            raise ContextFullError(f"sequence needs {start + n} positions but the context holds {self.n_ctx}")
        self.length[seq] = start + n
        return start

    def truncate(self, seq: int, n: int) -> None:
        """Keeps the first n positions of a slot (a shared prompt prefix) and forgets the rest."""
        if not 0 <= n <= self.length[seq]:
            raise ValueError(f"cannot keep {n} of {int(self.length[seq])} positions")
        self.length[seq] = n

    def copy_prefix(self, src: int, dst: int, n: int) -> None:
        """Makes slot dst start with the first n positions of slot src."""
        if not 0 <= n <= self.length[src]:
            raise ValueError(f"slot {src} holds {int(self.length[src])} positions, not {n}")
        if src != dst:
            self.k[dst, :, :, :n] = self.k[src, :, :, :n]
            self.v[dst, :, :, :n] = self.v[src, :, :, :n]
        self.length[dst] = n
