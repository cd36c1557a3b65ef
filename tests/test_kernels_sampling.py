"""ts_sample and ts_logprobs (kernels.sample_token / kernels.logprobs) against a plain numpy
statement of the same semantics, on every ISA this machine runs (conftest parametrizes isa)."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tensorsharp import kernels
from tensorsharp.engine.sampler import Sampler, SamplingParams

ISAS = kernels.available_isas()
# The C path sums its weights in float terms and in other orders than the reference: a token may
# differ where u or top_p sits within rounding of a boundary, and only there.
U_TOL = 1e-5
P_TOL = 1e-5


def ref_adjust(logits, bias=None, recent=(), rp=1.0, pp=0.0, fp=0.0, mask=None):
    x = np.array(logits, dtype=np.float32)
    x[~np.isfinite(x)] = -np.inf
    if mask is not None:
        i = np.arange(x.size)
        x[((mask[i // 32] >> (i % 32).astype(np.uint32)) & 1) == 0] = -np.inf
    big = np.finfo(np.float32).max
    with np.errstate(over="ignore"):
        for t, b in (bias or {}).items():
            if x[t] > -np.inf:
                x[t] = np.clip(x[t] + np.float32(b), -big, big)
        if len(recent) and (rp != 1.0 or pp or fp):
            toks, counts = np.unique(np.asarray(recent), return_counts=True)
            for t, c in zip(toks, counts):
                v = x[t]
                if v == -np.inf:
                    continue
                if rp != 1.0:
                    v = v / np.float32(rp) if v > 0 else v * np.float32(rp)
                x[t] = np.clip(np.float32(float(v) - c * fp - pp), -big, big)
    return x


def ref_kept(x, top_k, top_p, min_p):
    """Ids that survive top-k, then min-p, then top-p (measured within the top-k set), best first."""
    ids = np.flatnonzero(x > -np.inf)
    ids = ids[np.lexsort((ids, -x[ids]))]
    best = float(x[ids[0]])
    if 0 < top_k < ids.size:
        ids = ids[:top_k]
    e = np.exp(x[ids].astype(np.float64) - best)
    norm = e.sum()
    if min_p > 0:
        keep = x[ids].astype(np.float64) - best >= math.log(min_p)
        ids, e = ids[keep], e[keep]
    if top_p < 1:
        reached = np.flatnonzero(np.cumsum(e) >= top_p * norm)
        if reached.size:
            ids = ids[: reached[0] + 1]
    return ids


def ref_greedy(x):
    return int(np.argmax(x))   # the first of tied maxima; 0 when everything is masked


def ref_intervals(x, temperature, top_k, top_p, min_p):
    """Each kept token's share [start, end) of the unit interval, in id order: u picks the token
    whose share holds it."""
    ids = np.sort(ref_kept(x, top_k, top_p, min_p))
    w = np.exp((x[ids].astype(np.float64) - float(x.max())) / temperature)
    cum = np.cumsum(w) / w.sum()
    return {int(t): (a, b) for t, a, b in zip(ids, np.concatenate(([0.0], cum[:-1])), cum)}


def assert_matches(x_raw, u, isa, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, bias=None, recent=(),
                   rp=1.0, pp=0.0, fp=0.0, mask=None):
    got = kernels.sample_token(
        np.asarray(x_raw, np.float32), u, temperature, top_k, top_p, min_p, rp, pp, fp,
        np.array(list((bias or {}).keys()), np.int32), np.array(list((bias or {}).values()), np.float32),
        np.asarray(recent, np.int32), mask, isa=isa)
    x = ref_adjust(x_raw, bias, recent, rp, pp, fp, mask)
    if temperature <= 0 or not (x > -np.inf).any():
        assert got == ref_greedy(x)
        return
    for p in (top_p,) if top_p >= 1 else (top_p, top_p * (1 - P_TOL), min(top_p * (1 + P_TOL), 1 - 1e-12)):
        a, b = ref_intervals(x, temperature, top_k, p, min_p).get(got, (2.0, 2.0))
        if a <= u + U_TOL and b >= u - U_TOL:
            return
    raise AssertionError(f"token {got} is not where u = {u} falls: {ref_intervals(x, temperature, top_k, top_p, min_p)}")


_values = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 2.5, -np.inf]),   # ties and masked entries
    st.floats(-30, 30, width=32))


@st.composite
def _cases(draw):
    n = draw(st.integers(1, 150))
    x = draw(st.lists(_values, min_size=n, max_size=n))
    params = dict(
        temperature=draw(st.sampled_from([0.0, 0.3, 1.0, 2.0])),
        top_k=draw(st.sampled_from([0, 1, 2, 5, max(n - 1, 1), n, n + 7])),
        top_p=draw(st.sampled_from([0.0, 0.3, 0.9, 0.999, 1.0])),
        min_p=draw(st.sampled_from([0.0, 0.05, 0.5, 1.0])),
        rp=draw(st.sampled_from([1.0, 1.3, 0.7])),
        pp=draw(st.sampled_from([0.0, 0.5])),
        fp=draw(st.sampled_from([0.0, 0.25])),
    )
    params["recent"] = draw(st.lists(st.integers(0, n - 1), max_size=12))
    params["bias"] = draw(st.dictionaries(st.integers(0, n - 1), st.floats(-5, 5, width=32), max_size=3))
    if draw(st.booleans()):
        params["mask"] = np.array(draw(st.lists(st.integers(0, 2 ** 32 - 1), min_size=(n + 31) // 32,
                                                max_size=(n + 31) // 32)), np.uint32)
    u = draw(st.floats(0, 1, exclude_max=True))
    return x, u, params


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_cases())
def test_small_vocabularies_match_the_reference(isa, case):
    x, u, params = case
    assert_matches(x, u, isa, **params)


def _row(kind, n, rng):
    if kind == "peaked":        # many tokens within reach of the best: top-p keeps thousands
        return (rng.standard_normal(n) * 3).astype(np.float32)
    if kind == "flat":          # top-p 0.9 keeps most of the vocabulary
        return (rng.standard_normal(n) * 0.05).astype(np.float32)
    if kind == "spike":         # one dominant token, as most decode steps look
        x = (rng.standard_normal(n) * 2).astype(np.float32)
        x[rng.integers(n)] += 25
        return x
    if kind == "levels":        # a few distinct values: ties across histogram buckets and blocks
        return rng.choice(np.array([0.0, -0.5, -3.0, -np.inf], np.float32), n)
    return np.zeros(n, np.float32)   # all tied


@pytest.mark.parametrize("kind", ["peaked", "flat", "spike", "levels", "tied"])
@pytest.mark.parametrize("n", [4097, 40000])
def test_large_vocabularies_match_the_reference(isa, kind, n):
    rng = np.random.default_rng(n + len(kind))
    x = _row(kind, n, rng)
    combos = [dict(), dict(top_p=0.9), dict(top_p=0.5, min_p=0.05), dict(top_k=40, top_p=0.9, min_p=0.05),
              dict(min_p=0.2), dict(top_k=3000), dict(top_p=0.999), dict(top_p=0.0), dict(min_p=1.0)]
    for params in combos:
        for temperature in (0.0, 0.8):
            assert_matches(x, float(rng.random()), isa, temperature=temperature, **params)


def test_masked_rows_and_bounds(isa):
    x = np.array([0.5, 2.0, 2.0, -1.0], np.float32)
    nothing = np.zeros(1, np.uint32)
    for t in (0.0, 1.0):
        assert kernels.sample_token(x, 0.5, t, bitmask=nothing, isa=isa) == 0
        assert kernels.sample_token(np.full(3, -np.inf, np.float32), 0.5, t, isa=isa) == 0
    assert kernels.sample_token(x, 0.9, 1.0, top_k=10 ** 6, isa=isa) in {0, 1, 2, 3}
    assert kernels.sample_token(x, 0.99, 1.0, top_p=0.0, isa=isa) == 1   # ties: the lower id first
    assert kernels.sample_token(x, 0.99, 1.0, min_p=1.0, isa=isa) == 2   # both tied best survive
    assert kernels.sample_token(np.array([np.nan, 1.0, np.inf], np.float32), 0.3, 1.0, isa=isa) == 1
    assert kernels.sample_token(x, 0.99, 1e-300, isa=isa) == 1   # 1/T past float: the best, as greedy
    big = np.array([3e38, 1.0, -3e38], np.float32)   # a bias past the float range saturates
    one = np.ones(1, np.float32)
    assert kernels.sample_token(big, 0.5, bias_ids=np.array([0], np.int32), bias=one * 3e38, isa=isa) == 0
    assert kernels.sample_token(big, 0.5, 1.0, bias_ids=np.array([2], np.int32), bias=one * -3e38,
                                min_p=0.5, isa=isa) == 0
    with pytest.raises(ValueError):
        kernels.sample_token(x, 0.5, bias_ids=np.array([4], np.int32), bias=np.ones(1, np.float32), isa=isa)
    with pytest.raises(ValueError):
        kernels.sample_token(x, 0.5, repeat_penalty=1.1, recent=np.array([-1], np.int32), isa=isa)
    with pytest.raises(ValueError):
        kernels.sample_token(x, 0.5, bitmask=np.zeros(2, np.uint32), isa=isa)


@pytest.mark.parametrize("n", [3, 5000, 70001])
def test_logprobs_match_log_softmax(isa, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    x[rng.integers(n, size=3)] = x.max()   # ties among the best
    lp = x.astype(np.float64) - x.max()
    lp -= np.log(np.exp(lp).sum())
    token = int(rng.integers(n))
    got, top = kernels.logprobs(x, token, 20, isa=isa)
    assert got == pytest.approx(lp[token], abs=1e-5)
    want = np.lexsort((np.arange(n), -lp))[:20]
    assert [t for t, _ in top] == want.tolist()
    assert [v for _, v in top] == pytest.approx(lp[want], abs=1e-5)


@pytest.mark.parametrize("n_threads", [1, 2, 0])
def test_rows_sampled_together_match_each_alone(isa, n_threads):
    rng = np.random.default_rng(n_threads)
    n = 40000
    rows = []
    for i in range(9):
        x = _row(["peaked", "flat", "spike", "levels"][i % 4], n, rng)
        mask = rng.integers(0, 2 ** 32, (n + 31) // 32, dtype=np.uint32) if i % 3 == 0 else None
        rows.append((x, float(rng.random()), [0.0, 0.8, 1.3][i % 3], [0, 40][i % 2], [1.0, 0.9][i % 2],
                     [0.0, 0.05][i % 2], 1.1, 0.2 * (i % 2), 0.1, np.array([i, 7 * i], np.int32),
                     np.array([1.5, -2.0], np.float32), rng.integers(0, n, 32).astype(np.int32), mask))
    alone = [kernels.sample_token(*r, isa=isa) for r in rows]
    assert kernels.sample_tokens(rows, n_threads, isa=isa) == alone
    # A row whose bias names a token outside the vocabulary gets None; the others are still drawn.
    bad = rows[4][:9] + (np.array([n, 0], np.int32),) + rows[4][10:]
    assert kernels.sample_tokens(rows[:4] + [bad] + rows[5:], n_threads, isa=isa) == alone[:4] + [None] + alone[5:]
    with pytest.raises(ValueError):
        kernels.sample_tokens([rows[0], (rows[1][0][:-1],) + rows[1][1:]], n_threads, isa=isa)


def test_isas_agree_on_the_draw():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(151936) * 2).astype(np.float32)
    for params in (dict(), dict(top_p=0.9), dict(min_p=0.01)):
        for u in rng.random(20):
            toks = {kernels.sample_token(x, float(u), 1.0, **params, isa=isa) for isa in ISAS}
            assert len(toks) == 1, (params, u, toks)


def test_seeded_draws_follow_the_filtered_distribution():
    """A chi-square test of 20000 seeded draws against the probabilities the filters leave."""
    x = np.log(np.array([0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.05], np.float32))
    params = SamplingParams(temperature=0.7, top_k=6, top_p=0.9, seed=11)
    kept = np.sort(ref_kept(x, 6, 0.9, 0.0))
    assert kept.tolist() == [0, 1, 2, 3, 4]
    p = np.exp(x[kept].astype(np.float64) / 0.7)
    p /= p.sum()
    s = Sampler(params)
    draws = np.array([s.sample(x).token for _ in range(20000)])
    assert set(draws.tolist()) <= set(kept.tolist())
    counts = np.array([(draws == t).sum() for t in kept])
    chi2 = float((((counts - 20000 * p) ** 2) / (20000 * p)).sum())
    assert chi2 < 18.47   # the 0.1% point of chi-square with 4 degrees of freedom (5 kept tokens)
