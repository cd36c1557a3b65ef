"""The f16 KV cache of a fixed number of sequence slots, owned in numpy and filled by C."""
from __future__ import annotations

import numpy as np

from tensorsharp.errors import ContextFullError
from tensorsharp.models.base import Transformer


def common_prefix(a: list, b: list) -> int:
    """How many leading tokens two sequences share: what a slot's cache holds of a new sequence."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class KVCache:
    """Per slot, positions [0, length) hold valid K/V; writes past n_ctx are refused."""

    def __init__(self, model: Transformer, n_ctx: int, n_seq: int = 1):
        hp = model.hparams
        if n_ctx <= 0 or n_seq <= 0:
            raise ValueError("n_ctx and n_seq must be positive")
        shape = (n_seq, hp.n_layer, hp.n_head_kv, n_ctx, hp.head_dim)
        self.k = np.zeros(shape, dtype=np.uint16)  # (n_seq, n_layer, n_kv_head, n_ctx, head_dim) f16 bits
        self.v = np.zeros(shape, dtype=np.uint16)  # same layout as k
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
