"""The Python API: load a model by name or path, tokenize, evaluate, generate."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tensorsharp import store
from tensorsharp.engine.batch import Stepper
from tensorsharp.engine.kv_cache import KVCache
from tensorsharp.engine.sampler import Sampler, SamplingParams
from tensorsharp.engine.stop import StopMatcher
from tensorsharp.gguf import GGUFFile
from tensorsharp.models import load_model, reading
from tensorsharp.tokenizer import Tokenizer


class Model:
    """One model with a single-sequence KV cache that reuses the prefix shared with the last call."""

    def __init__(self, model: str, n_ctx: int = 4096, n_threads: int = 0, n_batch: int = 512,
                 kv_cache_type: str = "f16"):
        self.path = store.resolve(model)
        with reading(self.path):
            self.gguf = GGUFFile(self.path)
            self.transformer = load_model(self.gguf)
            self.tokenizer = Tokenizer.from_metadata(self.gguf.metadata)
            hp = self.transformer.hparams
            self.n_ctx = min(n_ctx, hp.n_ctx_train) if n_ctx > 0 else hp.n_ctx_train
            self.cache = KVCache(self.transformer, self.n_ctx, cache_type=kv_cache_type)
            self.transformer.use_context(self.n_ctx)  # LongRoPE picks its factors by the context
            self.stepper = Stepper(self.transformer, self.cache, n_batch=n_batch, n_threads=n_threads)
        self._cached: list[int] = []  # tokens whose K/V sit in slot 0 of the cache, in order

    @property
    def n_vocab(self) -> int:
        return self.transformer.hparams.n_vocab

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special=add_special, parse_special=parse_special)

    def tokenize_prompt(self, text: str) -> list[int]:
        """Ids of a rendered chat prompt: special tokens parsed, BOS added unless the text has it."""
        bos = self.tokenizer.bos_id
        has_bos = bos is not None and text.startswith(self.tokenizer.token_text(bos))
        return self.tokenize(text, add_special=not has_bos, parse_special=True)

    def detokenize(self, ids) -> str:
        return self.tokenizer.decode(list(ids))

    def eval(self, ids, logits_all: bool = False) -> np.ndarray:
        """Logits of a fresh sequence: (n_vocab,) of the last position, or (len(ids), n_vocab)."""
        ids = [int(t) for t in ids]
        if not ids:
            raise ValueError("eval needs at least one token")
        return self._evaluate(ids, keep=0, logits_all=logits_all)

    def _prefill(self, ids: list[int]) -> np.ndarray:
        """Logits after ids, evaluating only what the cache does not already hold."""
        keep = 0
        limit = min(len(ids) - 1, len(self._cached))  # the last token is always evaluated
        while keep < limit and self._cached[keep] == ids[keep]:
            keep += 1
        return self._evaluate(ids, keep)

    def _evaluate(self, ids: list[int], keep: int, logits_all: bool = False) -> np.ndarray:
        """Keeps the first `keep` cached positions and evaluates the rest of ids after them."""
        self._cached = self._cached[:keep]
        self.cache.truncate(0, keep)
        self.cache.reserve(0, len(ids) - keep)
        logits = self.stepper.prefill(ids[keep:], start=keep, logits_all=logits_all)
        self._cached = list(ids)
        return logits

    def generate(self, ids, max_tokens: int, temperature: float = 0.0, stop_at_eog: bool = True,
                 stop=(), **sampling) -> Iterator[int]:
        """Token ids sampled after the prompt ids, up to max_tokens, an end-of-generation token, or
        the token that completes one of the `stop` strings (that token is not yielded)."""
        ids = [int(t) for t in ids]
        if not ids:
            raise ValueError("generate needs at least one prompt token")
        params = SamplingParams(temperature=temperature, **sampling)
        params.validate(self.n_vocab)
        sampler = Sampler(params, history=ids)
        matcher = StopMatcher(stop) if stop else None
        decoder = self.tokenizer.stream(at_start=False) if stop else None
        logits = self._prefill(ids)
        for _ in range(max_tokens):
            tok = sampler.sample(logits).token
            sampler.accept(tok)
            if matcher is not None:
                matcher.feed(decoder.feed(tok))
                if matcher.stopped:
                    return
            yield tok
            if stop_at_eog and self.tokenizer.is_eog(tok):
                return
            pos = self.cache.reserve(0, 1)
            logits = self.stepper.step([tok], [pos], [0], [0])[0]
            self._cached.append(tok)
