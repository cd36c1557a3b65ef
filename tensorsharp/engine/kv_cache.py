"""The f16 KV cache of a fixed number of sequence slots, owned in numpy and filled by C."""
from __future__ import annotations

import numpy as np

from tensorsharp.models.base import Transformer


class KVCache:
    def __init__(self, model: Transformer, n_ctx: int, n_seq: int = 1):
        hp = model.hparams
        if n_ctx <= 0 or n_seq <= 0:
            raise ValueError("n_ctx and n_seq must be positive")
        shape = (n_seq, hp.n_layer, hp.n_head_kv, n_ctx, hp.head_dim)
        self.k = np.zeros(shape, dtype=np.uint16)  # (n_seq, n_layer, n_kv_head, n_ctx, head_dim) f16 bits
        self.v = np.zeros(shape, dtype=np.uint16)  # same layout as k
        self.n_ctx = n_ctx
        self.n_seq = n_seq

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes
