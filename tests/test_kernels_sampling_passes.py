"""Sampling's passes over a row of logits against numpy on every ISA: the prepare pass (token mask,
non-finite entries, block maxima, finite count) including vocabularies that end mid-word, and the
exp sums."""
import numpy as np
import pytest

from tensorsharp import kernels

# The SIMD exps are polynomials, the scalar one is libm's expf: terms agree to a few float ulps.
EXP_RTOL = 2e-6


def _expected(logits, bitmask):
    x = np.where(np.isfinite(logits), logits, -np.inf).astype(np.float32)
    if bitmask is not None:
        bits = np.unpackbits(bitmask.view(np.uint8), bitorder="little")[: logits.size].astype(bool)
        x = np.where(bits, x, -np.inf).astype(np.float32)
    pad = np.full(-x.size % 64, -np.inf, np.float32)
    return x, np.concatenate([x, pad]).reshape(-1, 64).max(axis=1), int(np.isfinite(x).sum())


def _check(logits, bitmask, isa):
    got, bm, finite = kernels.logits_prepare(logits, bitmask, isa=isa)
    want, want_bm, want_finite = _expected(logits, bitmask)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(bm, want_bm)
    assert finite == want_finite


@pytest.mark.parametrize("n_vocab", [1, 31, 32, 33, 63, 65, 1000, 49152, 151936 + 7])
@pytest.mark.parametrize("density", [0.0, 0.001, 0.5, 0.999, 1.0, None])
def test_prepare_matches_numpy(rng, isa, n_vocab, density):
    logits = rng.standard_normal(n_vocab).astype(np.float32)
    logits[rng.random(n_vocab) < 0.01] = np.nan
    logits[rng.random(n_vocab) < 0.01] = np.inf
    logits[rng.random(n_vocab) < 0.01] = -np.inf
    bitmask = None
    if density is not None:
        allowed = rng.random(((n_vocab + 31) // 32) * 32) < density
        # Bits past n_vocab are set at random too: the kernel must ignore them.
        bitmask = np.packbits(allowed, bitorder="little").view(np.uint32).copy()
    _check(logits, bitmask, isa)


def test_whole_words_and_single_bits(rng, isa):
    logits = rng.standard_normal(100).astype(np.float32)
    bitmask = np.array([0xFFFFFFFF, 0, 1 << 31, 1 << 3], np.uint32)
    _check(logits, bitmask, isa)
    got, _, finite = kernels.logits_prepare(logits, bitmask, isa=isa)
    assert np.isfinite(got[:32]).all() and np.isinf(got[32:64]).all()
    assert np.flatnonzero(np.isfinite(got[64:])).tolist() == [31, 35] and finite == 34


def test_mask_rejects_wrong_sizes_and_types():
    logits = np.zeros(64, np.float32)
    with pytest.raises(ValueError, match="words"):
        kernels.logits_prepare(logits, np.zeros(3, np.uint32))
    with pytest.raises(ValueError, match="uint32"):
        kernels.logits_prepare(logits, np.zeros(2, np.int64))


@pytest.mark.parametrize("n", [1, 7, 8, 17, 1000, 151936 + 5])
def test_exp_sum_matches_numpy(rng, isa, n):
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    x[rng.random(n) < 0.05] = -np.inf
    x[rng.random(n) < 0.05] = -90.0   # e^-111: flushed to 0 rather than built as a slow denormal
    sub, scale, lo = float(np.max(x)), 1.25, float(np.quantile(x[np.isfinite(x)], 0.3))
    total, terms = kernels.exp_sum(x, sub, scale, lo, isa=isa)
    # The argument is formed in float as the kernels form it; only the exp itself is compared.
    arg = (x - np.float32(sub)) * np.float32(scale)
    want = np.where((x >= lo) & (arg >= -87), np.exp(arg.astype(np.float64)), 0.0)
    np.testing.assert_allclose(terms, want, rtol=EXP_RTOL, atol=1e-30)
    assert total == pytest.approx(want.sum(), rel=EXP_RTOL)
    assert (terms[(x < lo) | (x == -90)] == 0).all()
    assert kernels.exp_sum(x, sub, scale, -np.finfo(np.float32).max, isa=isa)[0] == pytest.approx(
        np.exp(arg[np.isfinite(x) & (arg >= -87)].astype(np.float64)).sum(), rel=EXP_RTOL)
