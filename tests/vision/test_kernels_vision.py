"""The image encoder's kernels (layer norm, quick GELU, non-causal f32 attention) on every ISA level
against numpy in float64, at odd sizes so every SIMD tail runs."""
import numpy as np
import pytest

from tensorsharp import _kernels

# float32 kernels against a float64 reference: summation order is all that differs.
LAYERNORM_TOL = 2e-5
ATTN_TOL = 2e-5


def ref_layernorm(x, w, b, eps):
    x = x.astype(np.float64)
    y = (x - x.mean()) / np.sqrt(x.var() + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


def ref_attention(q, k, v, scale):
    s = q.astype(np.float64) @ k.astype(np.float64).T * scale
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p @ v.astype(np.float64)


@pytest.mark.parametrize("n", [1, 7, 16, 17, 72, 1152, 1155])
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm(isa, rng, n, affine):
    x = (rng.standard_normal(n) * 3 + 1.5).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32) if affine else None
    b = rng.standard_normal(n).astype(np.float32) if affine else None
    y = np.empty_like(x)
    _kernels.layernorm(x, w, b, y, 1e-6, isa)
    ref = ref_layernorm(x, w, b, 1e-6)
    assert np.abs(y - ref).max() <= LAYERNORM_TOL * max(1.0, np.abs(ref).max())


def test_layernorm_in_place(isa, rng):
    x = rng.standard_normal(100).astype(np.float32)
    ref = ref_layernorm(x, None, None, 1e-5)
    _kernels.layernorm(x, None, None, x, 1e-5, isa)
    assert np.abs(x - ref).max() <= LAYERNORM_TOL * np.abs(ref).max()


def test_gelu_quick(isa, rng):
    x = (rng.standard_normal(1001) * 4).astype(np.float32)
    y = np.empty_like(x)
    _kernels.gelu_quick(x, y, isa)
    ref = x / (1 + np.exp(-1.702 * x.astype(np.float64)))
    assert np.allclose(y, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nq,n_kv,hd", [(1, 1, 1), (3, 13, 7), (5, 100, 24), (32, 257, 72), (4, 40, 100),
                                        (6, 33, 130), (9, 16, 64)])
def test_attention_full(isa, rng, nq, n_kv, hd):
    q, k, v = (rng.standard_normal((n, hd)).astype(np.float32) for n in (nq, n_kv, n_kv))
    scale = 1.0 / np.sqrt(hd)
    out = np.full((nq, hd), np.nan, dtype=np.float32)
    scores = np.empty(nq * n_kv, dtype=np.float32)
    _kernels.attention_full(q, k, v, scale, scores, out, isa)
    ref = ref_attention(q, k, v, scale)
    assert np.abs(out - ref).max() <= ATTN_TOL * max(1.0, np.abs(ref).max())


def test_attention_full_peaked_scores(isa, rng):
    """Large scores (one key dominates) must not overflow the softmax."""
    q = (rng.standard_normal((4, 32)) * 30).astype(np.float32)
    k = (rng.standard_normal((50, 32)) * 30).astype(np.float32)
    v = rng.standard_normal((50, 32)).astype(np.float32)
    out = np.empty((4, 32), dtype=np.float32)
    _kernels.attention_full(q, k, v, 1.0, np.empty(200, np.float32), out, isa)
    assert np.abs(out - ref_attention(q, k, v, 1.0)).max() <= ATTN_TOL


def test_attention_full_rejects_bad_shapes():
    q = np.zeros((2, 8), np.float32)
    kv = np.zeros((3, 8), np.float32)
    with pytest.raises(ValueError):
        _kernels.attention_full(q, kv, kv, 1.0, np.empty(5, np.float32), np.empty((2, 8), np.float32))
    with pytest.raises(ValueError):
        _kernels.attention_full(q, kv, np.zeros((3, 4), np.float32), 1.0, np.empty(6, np.float32),
                                np.empty((2, 8), np.float32))


@pytest.mark.parametrize("nr,nc", [(1, 1), (4, 4), (3, 2), (2, 3), (4, 1), (1, 4)])
@pytest.mark.parametrize("n", [1, 7, 8, 16, 33, 588, 1152])
def test_gemm_f16_tile(isa, rng, nr, nc, n):
    w = rng.standard_normal((nr, n)).astype(np.float16)
    x = rng.standard_normal((nc, n)).astype(np.float32)
    y = np.full((nc, nr), np.nan, dtype=np.float32)
    _kernels.gemm_f16_tile(w.view(np.uint16), x, y, isa)
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    assert np.abs(y - ref).max() <= 1e-5 * max(1.0, np.sqrt(n))
