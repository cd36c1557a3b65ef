"""The constrained-decoding token mask against numpy, including vocabularies that end mid-word."""
import numpy as np
import pytest

from tensorsharp import kernels


def _expected(logits, bitmask):
    bits = np.unpackbits(bitmask.view(np.uint8), bitorder="little")[: logits.size].astype(bool)
    return np.where(bits, logits, -np.inf).astype(np.float32)


@pytest.mark.parametrize("n_vocab", [1, 31, 32, 33, 1000, 49152, 151936 + 7])
@pytest.mark.parametrize("density", [0.0, 0.001, 0.5, 0.999, 1.0])
def test_mask_matches_numpy(rng, n_vocab, density):
    logits = rng.standard_normal(n_vocab).astype(np.float32)
    allowed = rng.random(((n_vocab + 31) // 32) * 32) < density
    # Bits past n_vocab are set at random too: the kernel must ignore them.
    bitmask = np.packbits(allowed, bitorder="little").view(np.uint32).copy()
    want = _expected(logits, bitmask)
    kernels.apply_token_mask(logits, bitmask)
    np.testing.assert_array_equal(logits, want)


def test_whole_words_and_single_bits(rng):
    logits = rng.standard_normal(100).astype(np.float32)
    bitmask = np.array([0xFFFFFFFF, 0, 1 << 31, 1 << 3], np.uint32)
    want = _expected(logits, bitmask)
    kernels.apply_token_mask(logits, bitmask)
    np.testing.assert_array_equal(logits, want)
    assert np.isfinite(logits[:32]).all() and np.isinf(logits[32:64]).all()
    assert np.flatnonzero(np.isfinite(logits[64:])).tolist() == [31, 35]


def test_mask_rejects_wrong_sizes_and_types():
    logits = np.zeros(64, np.float32)
    with pytest.raises(ValueError, match="words"):
        kernels.apply_token_mask(logits, np.zeros(3, np.uint32))
    with pytest.raises(ValueError, match="uint32"):
        kernels.apply_token_mask(logits, np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="float32"):
        kernels.apply_token_mask(logits.astype(np.float64), np.zeros(2, np.uint32))
    with pytest.raises(ValueError, match="float32"):
        kernels.apply_token_mask(logits[::2], np.zeros(1, np.uint32))
