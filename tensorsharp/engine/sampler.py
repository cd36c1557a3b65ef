"""Token sampling: penalties, logit bias, top-k / top-p / min-p, temperature, seeded draws."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tensorsharp.kernels import logprobs, sample_token, sample_tokens

# Bound of the integer options that count tokens: a window or top-k past any vocabulary or context
# means "all", and keeps values such as 2^63 out of buffer sizes and the C call's int arguments.
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


class Sampler:
    """Samples one sequence's tokens; remembers its recent window for the penalties. The work per
    token is ts_sample over the logits row (tensorsharp.kernels.sample_token)."""

    def __init__(self, params: SamplingParams, history=()):
        self.p = params
        self.rng = np.random.default_rng(params.seed)
        self._window = None if params.repeat_last_n < 0 else params.repeat_last_n
        self._penalize = params.repeat_penalty != 1.0 or bool(params.presence_penalty or params.frequency_penalty)
        self._bias_ids = np.fromiter((int(t) for t in params.logit_bias), np.int32, len(params.logit_bias))
        self._bias = np.fromiter(params.logit_bias.values(), np.float32, len(params.logit_bias))
        # The window is the slice [_lo, _hi) of _buf, kept contiguous for C: appends go at _hi and
        # the buffer is compacted (or grown, for the whole history) when it runs out.
        hist = list(history)
        if self._window is not None:
            hist = hist[len(hist) - self._window:] if self._window else []
        self._buf = np.empty(max(64, 2 * len(hist), 2 * (self._window or 0)), np.int32)
        self._buf[: len(hist)] = hist
        self._lo, self._hi = 0, len(hist)

    @property
    def recent(self) -> np.ndarray:
        """The penalties' window, oldest first (window,) int32."""
        return self._buf[self._lo:self._hi]

    def accept(self, token: int) -> None:
        if self._window == 0:
            return
        if self._hi == self._buf.size:
            kept = self._buf[self._lo:self._hi]
            if self._window is None:
                self._buf = np.empty(2 * self._buf.size, np.int32)
            self._buf[: kept.size] = kept
            self._lo, self._hi = 0, kept.size
        self._buf[self._hi] = token
        self._hi += 1
        if self._window is not None and self._hi - self._lo > self._window:
            self._lo += 1

    def sample(self, logits: np.ndarray, bitmask: np.ndarray | None = None) -> Sample:
        """One token from logits (n_vocab,); bitmask (ceil(n_vocab/32),) uint32 limits the allowed
        tokens (a constraint's mask: bit i % 32 of word i // 32 set = token i allowed)."""
        return self._result(logits, sample_token(*self._arguments(logits, bitmask)))

    def _arguments(self, logits: np.ndarray, bitmask: np.ndarray | None) -> tuple:
        """sample_token's arguments for one row."""
        p = self.p
        # One uniform per sampled token, none for greedy: a seed's stream advances as before.
        u = self.rng.random() if p.temperature > 0 else 0.0
        return (logits, u, p.temperature, p.top_k, p.top_p, p.min_p, p.repeat_penalty, p.presence_penalty,
                p.frequency_penalty, self._bias_ids, self._bias, self.recent if self._penalize else None, bitmask)

    def _result(self, logits: np.ndarray, token: int) -> Sample:
        out = Sample(token)
        if self.p.n_probs:
            out.logprob, out.top = logprobs(logits, token, self.p.n_probs)
        return out


def sample_rows(jobs: list[tuple[Sampler, np.ndarray]], n_threads: int = 0) -> list[Sample | None]:
    """What each sampler's sample(logits) gives, for the rows of several sequences at once: their
    ts_sample calls share the pool's threads (a row of a large vocabulary is mostly a cold read of
    its logits, which threads divide). None where sample would raise ValueError (a logit-bias or
    recent token id outside the vocabulary)."""
    tokens = sample_tokens([s._arguments(logits, None) for s, logits in jobs], n_threads)
    return [None if t is None else s._result(logits, t) for (s, logits), t in zip(jobs, tokens)]
