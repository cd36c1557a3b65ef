"""How many guessed rows a decode step carries: the model's step-cost curve, and the allotment
that spends rows on guesses only while they are expected to raise the step's tokens per second.

A guessed row is not free: past a few rows the few-token gemm's step grows (SmolLM2 at 2 threads:
8 rows cost ~1.9x one row), so a batch already holding several decoding sequences loses more to
rows that guess wrong than it gains from the few that hold. Each step therefore weighs what the
extra rows cost (the measured curve) against what they are expected to yield (each request's rate
of guessed tokens that held, engine/draft.py).
"""
from __future__ import annotations

import statistics
import time
import weakref

PROBE_ROWS = (1, 2, 4, 8, 12, 16)   # row counts timed; others are interpolated between them
ROUNDS = 5                          # interleaved timing rounds; each count's median ratio is kept
# Positions the timed rows follow. Each row attends to its whole context, and on a small model that
# attention is a large share of a row's cost: 8 rows timed at the start of one empty slot looked
# like 1.4 steps of one on SmolLM2, where 8 decoding sequences 128 tokens in take 2.2. So the rows
# are timed CONTEXT positions in, each in a slot of its own while empty slots last.
CONTEXT = 256

_measured: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # transformer -> {threads: StepCosts}


class StepCosts:
    """The time of a step of n rows relative to a step of one row, for 1 <= n <= max_rows."""

    def __init__(self, rows: tuple[int, ...], ratios: tuple[float, ...]):
        if rows[0] != 1 or len(rows) != len(ratios) or list(rows) != sorted(set(rows)):
            raise ValueError("rows must rise from 1, one ratio each")
        self.rows, self.ratios = rows, ratios
        self.max_rows = rows[-1]
        # Every count's cost, interpolated between the measured ones once: allot reads it each step.
        self._table = [0.0, ratios[0]]
        for i in range(1, len(rows)):
            lo, hi = rows[i - 1], rows[i]
            self._table += [ratios[i - 1] + (ratios[i] - ratios[i - 1]) * (n - lo) / (hi - lo)
                            for n in range(lo + 1, hi + 1)]

    @classmethod
    def flat(cls, max_rows: int = 16) -> "StepCosts":
        """Rows that cost nothing extra: every guess is worth its row (tests, and what to compare with)."""
        return cls((1, max_rows), (1.0, 1.0)) if max_rows > 1 else cls((1,), (1.0,))

    def __call__(self, n: int) -> float:
        if not 1 <= n <= self.max_rows:
            raise ValueError(f"no cost known for a step of {n} rows")
        return self._table[n]

    def __repr__(self) -> str:
        return "StepCosts(" + ", ".join(f"{n}: {r:.2f}" for n, r in zip(self.rows, self.ratios)) + ")"


def step_costs(stepper, max_rows: int) -> StepCosts:
    """The stepper's curve up to max_rows, timed once per model and thread count on the stepper's
    empty slots (slot 0 at least must be empty; they are written and left empty). Rows have their
    logits, as a guess's have, and sit CONTEXT positions into their sequences. Counts are timed
    interleaved, in rounds, so that drift of a shared machine's speed falls on all of them alike."""
    known = _measured.setdefault(stepper.model, {})
    costs = known.get(stepper.n_threads)
    if costs is not None and costs.max_rows >= max_rows:
        return costs
    if max_rows <= 1:
        return StepCosts((1,), (1.0,))
    rows = tuple(n for n in PROBE_ROWS if n < max_rows) + (max_rows,)
    cache = stepper.cache
    at = max(0, min(CONTEXT, cache.n_ctx - max_rows))
    free = [i for i in range(cache.n_seq) if cache.length[i] == 0] or [0]

    def timed(n: int) -> float:
        seq = [free[i % len(free)] for i in range(n)]
        pos = [at + i // len(free) for i in range(n)]
        for slot in set(seq):
            cache.reserve(slot, at + seq.count(slot))
        t = time.perf_counter()
        stepper.step([0] * n, pos, seq, list(range(n)))
        t = time.perf_counter() - t
        for slot in set(seq):
            cache.truncate(slot, 0)
        return t

    timed(1)   # the first step pages the weights in
    ratios = {n: [] for n in rows}
    for _ in range(ROUNDS):
        one = timed(1)
        for n in rows[1:]:
            ratios[n].append(timed(n) / one)
    curve = [1.0]
    for n in rows[1:]:   # a step of more rows never costs less: noise is not a discount
        curve.append(max(curve[-1], statistics.median(ratios[n])))
    costs = known[stepper.n_threads] = StepCosts(rows, tuple(curve))
    return costs


def allot(base: int, rates: list[float], proposed: list[int], costs: StepCosts, max_rows: int) -> list[int]:
    """Guessed rows for each of `base` decoding requests, in a step of at most max_rows rows, given
    the guess length each proposes and each one's rate of guessed tokens that held (taken as the
    chance a token holds once the ones before it did).

    The j-th guessed token of a request yields a token only if it and all before it hold: it is
    worth rate**j tokens. A step of base + x rows is expected to yield base + (the worth of its x
    best guessed tokens) for costs(base + x): x is chosen where that ratio is highest, so a
    request whose guesses keep failing stops getting rows, one whose guesses hold keeps them, and
    a batch whose extra rows cost more than they yield gets none."""
    counts = [0] * len(rates)
    if base >= min(max_rows, costs.max_rows):
        return counts
    worth = sorted(((rate ** j, i) for i, (rate, n) in enumerate(zip(rates, proposed)) for j in range(1, n + 1)),
                   key=lambda w: -w[0])   # stable: a request's tokens stay in order
    cost = costs._table
    best, best_x, tokens = base / cost[base], 0, float(base)
    for x, (w, _) in enumerate(worth[:min(max_rows, costs.max_rows) - base], start=1):
        tokens += w
        if tokens / cost[base + x] > best:
            best, best_x = tokens / cost[base + x], x
    for _, i in worth[:best_x]:
        counts[i] += 1
    return counts
