"""Token sampling: penalties, logit bias, top-k / top-p / min-p, temperature, seeded draws."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from tensorsharp.kernels import apply_token_mask

@dataclass
class SamplingParams:
    """Per-request sampling options; the defaults are the engine's (greedy, no penalties)."""

    temperature: float = 0.0    # <= 0: greedy
    top_k: int = 0              # <= 0: off
    top_p: float = 1.0          # >= 1: off
    min_p: float = 0.0          # <= 0: off
    repeat_penalty: float = 1.0  # 1: off
    repeat_last_n: int = 64     # window of past tokens for all penalties; -1: whole history
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    n_probs: int = 0            # alternatives to report with each token

    def validate(self, n_vocab: int) -> None:
        if self.temperature < 0 or self.top_p < 0 or self.min_p < 0 or self.min_p > 1:
            raise ValueError("temperature, top_p and min_p must be non-negative (min_p <= 1)")
        if self.repeat_penalty <= 0:
            raise ValueError("repeat_penalty must be positive")
        if self.repeat_last_n < -1:
            raise ValueError("repeat_last_n must be -1 or more")
        if not 0 <= self.n_probs <= 20:
            raise ValueError("n_probs must be between 0 and 20")
        for tok in self.logit_bias:
            if not 0 <= int(tok) < n_vocab:
                raise ValueError(f"logit_bias token {tok} is outside the vocabulary")


@dataclass
class Sample:
    token: int
    logprob: float | None = None                   # of the chosen token under the model
    top: list[tuple[int, float]] | None = None     # (token, logprob) best first


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - np.max(logits)
    return z - np.log(np.exp(z).sum())


class Sampler:
    """Samples one sequence's tokens; remembers its history for the penalties."""

    def __init__(self, params: SamplingParams, history=()):
        self.p = params
        self.rng = np.random.default_rng(params.seed)
        window = None if params.repeat_last_n < 0 else params.repeat_last_n
        self.recent: deque[int] = deque(history, maxlen=window)

    def accept(self, token: int) -> None:
        if self.recent.maxlen != 0:
            self.recent.append(token)

    def _adjust(self, logits: np.ndarray) -> np.ndarray:
        p = self.p
        x = logits.astype(np.float32, copy=True)
        for tok, bias in p.logit_bias.items():
            x[int(tok)] += bias
        if self.recent and (p.repeat_penalty != 1.0 or p.presence_penalty or p.frequency_penalty):
            toks, counts = np.unique(np.fromiter(self.recent, dtype=np.int64), return_counts=True)
            v = x[toks]
            if p.repeat_penalty != 1.0:
                v = np.where(v > 0, v / p.repeat_penalty, v * p.repeat_penalty)
            v = v - counts * p.frequency_penalty - p.presence_penalty
            x[toks] = v
        return x

    def sample(self, logits: np.ndarray, bitmask: np.ndarray | None = None) -> Sample:
        """One token from logits (n_vocab,); bitmask (ceil(n_vocab/32),) uint32 limits the allowed
        tokens (a constraint's mask: bit i % 32 of word i // 32 set = token i allowed)."""
        p = self.p
        x = self._adjust(logits)
        if bitmask is not None:
            apply_token_mask(x, bitmask)
        if p.temperature <= 0:
            token = int(np.argmax(x))
        else:
            token = self._draw(x)
        out = Sample(token)
        if p.n_probs:
            lp = log_softmax(logits)
            out.logprob = float(lp[token])
            top = np.argpartition(-lp, p.n_probs)[: p.n_probs] if p.n_probs < lp.size else np.arange(lp.size)
            top = top[np.argsort(-lp[top], kind="stable")]
            out.top = [(int(t), float(lp[t])) for t in top]
        return out

    def _draw(self, x: np.ndarray) -> int:
        p = self.p
        n = x.size
        k = p.top_k if 0 < p.top_k < n else n
        # Candidates sorted by logit, best first (ties keep the lower id first).
        if k < n:
            cand = np.argpartition(-x, k - 1)[:k]
        else:
            cand = np.arange(n)
        cand = cand[np.isfinite(x[cand])]
        if cand.size == 0:
            return int(np.argmax(x))
        cand = cand[np.lexsort((cand, -x[cand]))]
        logits = x[cand].astype(np.float64)
        probs = np.exp(logits - logits[0])
        probs /= probs.sum()
        if p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            cand, logits, probs = cand[:keep], logits[:keep], probs[:keep]
        if p.min_p > 0.0:
            keep = probs >= p.min_p * probs[0]
            cand, logits = cand[keep], logits[keep]
        z = logits / p.temperature
        w = np.exp(z - z.max())
        w /= w.sum()
        return int(cand[self.rng.choice(cand.size, p=w)])
