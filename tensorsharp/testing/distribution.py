"""Whether sampled outputs follow a model's distribution: the exact probabilities of a reply's
first three tokens under top-k sampling at temperature 1, and a chi-square test of samples
against them (speculation must not change what is sampled, only how fast)."""
from __future__ import annotations

import numpy as np


def first_three(logits_of, ids: list[int], k: int) -> dict[tuple, float]:
    """(t0, t1, t2) -> its probability when each token is drawn from the softmax of the k best
    logits; logits_of(tokens) gives the logits after tokens."""
    def top(prefix):
        logits = np.asarray(logits_of(ids + list(prefix)), dtype=np.float64)
        best = np.argsort(-logits)[:k]
        p = np.exp(logits[best] - logits[best].max())
        return zip(best.tolist(), p / p.sum())
    return {(t0, t1, t2): p0 * p1 * p2 for t0, p0 in top([]) for t1, p1 in top([t0]) for t2, p2 in top([t0, t1])}


def chi2_critical(dof: int, z: float = 3.09) -> float:
    """The chi-square value exceeded with probability ~0.001 (Wilson-Hilferty)."""
    h = 2 / (9 * dof)
    return dof * (1 - h + z * (2 * h) ** 0.5) ** 3


def assert_follows(got: list[tuple], want: dict[tuple, float]) -> None:
    """Fails unless the sampled triples got could come from want (cells expected fewer than 5
    times are pooled into one)."""
    n = len(got)
    assert set(got) <= set(want), "a sequence the target cannot sample"
    cells = sorted(want, key=want.get, reverse=True)
    big = [c for c in cells if want[c] * n >= 5]
    observed = [got.count(c) for c in big] + [sum(got.count(c) for c in cells if c not in big)]
    expected = [want[c] * n for c in big] + [n * sum(want[c] for c in cells if c not in big)]
    stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected) if e > 0)
    assert stat < chi2_critical(len(big)), f"chi-square {stat:.1f} over {len(big)} degrees of freedom"
