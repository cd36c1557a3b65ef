"""One forward step over a batch of tokens from any number of sequences."""
from __future__ import annotations

import numpy as np

from tensorsharp import _kernels
from tensorsharp.engine.kv_cache import KVCache
from tensorsharp.models.base import Transformer


class Stepper:
    """Runs batches of up to n_batch tokens through the model into a KV cache."""

    def __init__(self, model: Transformer, cache: KVCache, n_batch: int = 512, n_threads: int = 0):
        self.model = model
        self.cache = cache
        self.n_batch = n_batch
        self.n_threads = n_threads
        self._ctx = _kernels.NativeContext(model.native, n_batch)

    def step(self, tokens, pos, seq, out_rows, embd=None, attn_end=None, hidden_rows=None):
        """Logits (len(out_rows), n_vocab) for the listed batch rows. Rows whose token is -1 take
        their input from embd (len(tokens), n_embd); attn_end (len(tokens)) ends each row's
        attention past its own position (an image's rows see the whole image). With hidden_rows,
        returns (logits, hidden): hidden (len(hidden_rows), n_embd) the final hidden states of
        those rows (what embeddings pool)."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        pos = np.ascontiguousarray(pos, dtype=np.int32)
        seq = np.ascontiguousarray(seq, dtype=np.int32)
        out_rows = np.ascontiguousarray(out_rows, dtype=np.int32)
        if embd is not None:
            embd = np.ascontiguousarray(embd, dtype=np.float32)
        if attn_end is not None:
            attn_end = np.ascontiguousarray(attn_end, dtype=np.int32)
        logits = np.empty((max(len(out_rows), 1), self.model.hparams.n_vocab), dtype=np.float32)
        hidden = None
        if hidden_rows is not None:
            hidden_rows = np.ascontiguousarray(hidden_rows, dtype=np.int32)
            hidden = np.empty((max(len(hidden_rows), 1), self.model.hparams.n_embd), dtype=np.float32)
        self._ctx.forward(self.cache.k, self.cache.v, self.cache.type_id, tokens, pos, seq, out_rows, logits, self.n_threads,
                          embd, attn_end, hidden_rows, hidden)
        if hidden is None:
            return logits[: len(out_rows)]
        return logits[: len(out_rows)], hidden[: len(hidden_rows)]

    def prefill(self, tokens, start: int = 0, seq: int = 0, logits_all: bool = False) -> np.ndarray:
        """Runs tokens in chunks of n_batch from position `start`: logits (n_vocab,) of the last
        token, or (len(tokens), n_vocab) of every one when logits_all."""
        tokens = np.asarray(tokens, dtype=np.int32)
        out = []
        for a in range(0, len(tokens), self.n_batch):
            chunk = tokens[a:a + self.n_batch]
            last = a + len(chunk) == len(tokens)
            rows = range(len(chunk)) if logits_all else ([len(chunk) - 1] if last else [])
            pos = np.arange(start + a, start + a + len(chunk), dtype=np.int32)
            out.append(self.step(chunk, pos, np.full(len(chunk), seq, np.int32), list(rows)))
        return np.concatenate(out) if logits_all else out[-1][0]
