"""Token sampling: penalties, logit bias, top-k / top-p / min-p, temperature, seeded draws."""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from tensorsharp.kernels import apply_token_mask

# Bound of the integer options that count tokens: a window or top-k past any vocabulary or context
# means "all", and keeps values such as 2^63 out of deque and numpy sizes.
MAX_WINDOW = 1 << 30

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
        if not -1 <= self.repeat_last_n <= MAX_WINDOW:
            raise ValueError(f"repeat_last_n must be between -1 and {MAX_WINDOW}")
        if not 0 <= self.top_k <= MAX_WINDOW:
            raise ValueError(f"top_k must be between 0 and {MAX_WINDOW}")
        if self.seed is not None and not 0 <= self.seed < 2 ** 64:
            raise ValueError("seed must be between 0 and 2^64 - 1")
        numbers = (self.temperature, self.top_p, self.min_p, self.repeat_penalty, self.presence_penalty,
                   self.frequency_penalty, *self.logit_bias.values())
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError("sampling options must be finite numbers")
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
        ids, logits = self._candidates(x)
        z = logits * (1.0 / self.p.temperature)
        cdf = np.cumsum(np.exp(z - z.max()))
        # Inverse-CDF draw: what rng.choice(p=...) does, without its checks over the whole vocabulary.
        at = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
        return int(ids[min(at, ids.size - 1)])

    def _candidates(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ids that survive top-k, min-p and top-p, with their logits. With top-p or
        min-p they come best first (ties: lower id first), and only as many as the filters can keep
        are sorted: a full sort of a 50k-262k vocabulary per token costs milliseconds."""
        p = self.p
        finite = np.isfinite(x)
        if finite.all():  # the common case: no constraint mask, no -inf bias
            if p.top_k <= 0 and p.top_p >= 1.0 and p.min_p <= 0.0:
                return np.arange(x.size), x  # float32 is precise enough to draw from
            ids = np.arange(x.size)
        else:
            ids = np.flatnonzero(finite)
            if ids.size == 0:
                return np.array([int(np.argmax(x))]), np.zeros(1)
        if 0 < p.top_k < ids.size:
            ids = ids[np.argpartition(-x[ids], p.top_k - 1)[: p.top_k]]
        v = x[ids].astype(np.float64)
        if p.top_p >= 1.0 and p.min_p <= 0.0:
            return ids, v
        e = np.exp(v - v.max())  # probability times the normalizer, relative to the best
        norm = e.sum()           # top-p is measured within the top-k set
        if p.min_p > 0.0:        # cuts the tail, as top-p does, so the two commute
            keep = e >= p.min_p
            ids, v, e = ids[keep], v[keep], e[keep]
        m = min(ids.size, 64) if p.top_p < 1.0 else ids.size
        while True:
            part = np.argpartition(-v, m - 1)[:m] if m < ids.size else np.arange(ids.size)
            part = part[np.lexsort((ids[part], -v[part]))]
            if p.top_p >= 1.0:
                return ids[part], v[part]
            cum = np.cumsum(e[part]) / norm
            if cum[-1] >= p.top_p or m == ids.size:
                part = part[: int(np.searchsorted(cum, p.top_p)) + 1]
                return ids[part], v[part]
            m = min(ids.size, 4 * m)
