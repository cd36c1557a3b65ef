"""Norms, activations, softmax, RoPE and f16 conversions on every ISA against float64 numpy."""
import numpy as np
import pytest

from tensorsharp import _kernels, kernels

# Lengths with tails that are not multiples of 8 or 16, a lone element and a long row.
LENGTHS = [1, 7, 33, 1000, 4099]

EPS32 = 2.0 ** -24  # unit roundoff of float32

RMS_TOL = 1e-6  # relative, per element
ACT_TOL = 1e-6  # relative, silu / gelu / gated products
# softmax: x - max is rounded to float before exp, an error of up to EPS32*|x - max| in the
# exponent, i.e. a relative error of that size in the probability; on top of that SOFTMAX_TOL.
SOFTMAX_TOL = 1e-6
# gelu: u = sqrt(2/pi)*(x + 0.044715x^3) takes a few roundings; gelu(x) = x*sigmoid(2u) turns
# an error of GELU_U_ULPS*EPS32*|2u| in 2u into that relative error where gelu is tiny.
GELU_U_ULPS = 4
ROPE_TOL = 1e-6  # absolute, relative to the largest |x| of the head
ATOL_TINY = 1e-30  # outputs at or below float32's underflow (silu(-100), gelu(-10)) are compared absolutely


def _close(y, ref, rtol, atol=0.0):
    y = np.asarray(y, dtype=np.float64)
    err = np.abs(y - ref)
    bound = rtol * np.abs(ref) + atol
    assert np.all(err <= bound), f"max excess {np.max(err - bound)} at {np.argmax(err - bound)}"


def _silu_ref(x):
    return x / (1.0 + np.exp(-x))


def _gelu_u(x):
    return np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)


def _gelu_ref(x):
    # 0.5*x*(1 + tanh(u)) written as x*sigmoid(2u): equal, but 1 + tanh(u) cancels even in
    # float64 (absolute error ~1e-15) where gelu is tiny.
    return x / (1.0 + np.exp(-2.0 * _gelu_u(x)))


def _gelu_rtol(x):
    return ACT_TOL + GELU_U_ULPS * EPS32 * np.abs(2.0 * _gelu_u(x))


# ---- rmsnorm ----

@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("weighted", [True, False])
def test_rmsnorm(isa, n, weighted, rng):
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    w = (1 + 0.3 * rng.standard_normal(n)).astype(np.float32) if weighted else None
    eps = 1e-5
    xd = x.astype(np.float64)
    ref = xd / np.sqrt(np.mean(xd * xd) + eps)
    if weighted:
        ref = ref * w
    _close(kernels.rmsnorm(x, w, eps, isa=isa), ref, RMS_TOL)


def test_rmsnorm_eps_dominates_zero_row(isa):
    y = kernels.rmsnorm(np.zeros(33, np.float32), None, 1e-6, isa=isa)
    assert np.array_equal(y, np.zeros(33, np.float32))


def test_rmsnorm_in_place(isa, rng):
    x = rng.standard_normal(1000).astype(np.float32)
    w = rng.standard_normal(1000).astype(np.float32)
    y = kernels.rmsnorm(x, w, 1e-6, isa=isa)
    _kernels.rmsnorm(x, w, x, 1e-6, isa)
    assert np.array_equal(x, y)


# ---- softmax ----

@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("offset", [0.0, 1000.0, -1000.0])
def test_softmax(isa, n, offset, rng):
    x = (rng.standard_normal(n) * 4 + offset).astype(np.float32)
    xd = x.astype(np.float64)
    e = np.exp(xd - xd.max())
    ref = e / e.sum()
    gap = xd.max() - xd
    y = kernels.softmax(x, isa=isa)
    _close(y, ref, SOFTMAX_TOL + EPS32 * gap)
    assert abs(float(np.sum(y, dtype=np.float64)) - 1.0) < 1e-5


def test_softmax_one_element_and_ties(isa):
    assert np.array_equal(kernels.softmax(np.array([-3.5], np.float32), isa=isa), [1.0])
    assert np.array_equal(kernels.softmax(np.full(37, 2.0, np.float32), isa=isa),
                          np.full(37, np.float32(1.0) / np.float32(37.0)))


# ---- activations ----

@pytest.mark.parametrize("n", LENGTHS)
def test_silu(isa, n, rng):
    x = (rng.standard_normal(n) * 6).astype(np.float32)
    _close(kernels.silu(x, isa=isa), _silu_ref(x.astype(np.float64)), ACT_TOL)


@pytest.mark.parametrize("n", LENGTHS)
def test_gelu(isa, n, rng):
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    xd = x.astype(np.float64)
    _close(kernels.gelu(x, isa=isa), _gelu_ref(xd), _gelu_rtol(xd), ATOL_TINY)


EXTREMES = np.array([-1e30, -100.0, -89.0, -87.5, -20.0, -1e-30, -0.0, 0.0, 1e-30, 1e-3,
                     20.0, 88.5, 89.0, 100.0, 1e30], np.float32)


def test_activation_extremes(isa):
    xd = EXTREMES.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        silu_ref = np.where(xd < -500, 0.0, _silu_ref(xd))
        gelu_ref = np.where(xd < -5, 0.0, np.where(xd > 5, xd, _gelu_ref(xd)))
    silu = kernels.silu(EXTREMES, isa=isa)
    gelu = kernels.gelu(EXTREMES, isa=isa)
    # Below -87 e^-x overflows float32, so silu's tiny result flushes to -0: the absolute error
    # is then below ATOL_TINY. Where gelu is tiny but nonzero its relative error is unbounded.
    _close(silu, silu_ref, ACT_TOL, ATOL_TINY)
    assert np.all(np.isfinite(gelu))
    _close(gelu, gelu_ref, 2e-6, 1e-7)
    assert np.array_equal(np.signbit(silu[5:9]), np.signbit(EXTREMES[5:9]))


def test_activations_propagate_nan(isa):
    x = np.array([np.nan, 1.0, -np.nan, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], np.float32)
    for y in (kernels.silu(x, isa=isa), kernels.gelu(x, isa=isa)):
        assert np.isnan(y[[0, 2]]).all() and np.isfinite(y[[1, 3, 4, 5, 6, 7, 8]]).all()


@pytest.mark.parametrize("n", LENGTHS)
def test_swiglu(isa, n, rng):
    g = (rng.standard_normal(n) * 4).astype(np.float32)
    u = rng.standard_normal(n).astype(np.float32)
    ref = _silu_ref(g.astype(np.float64)) * u
    _close(kernels.swiglu(g, u, isa=isa), ref, 2 * ACT_TOL)


@pytest.mark.parametrize("n", LENGTHS)
def test_geglu(isa, n, rng):
    g = (rng.standard_normal(n) * 3).astype(np.float32)
    u = rng.standard_normal(n).astype(np.float32)
    gd = g.astype(np.float64)
    _close(kernels.geglu(g, u, isa=isa), _gelu_ref(gd) * u, ACT_TOL + _gelu_rtol(gd), ATOL_TINY)


def test_gated_and_unary_in_place(isa, rng):
    g = rng.standard_normal(1003).astype(np.float32)
    u = rng.standard_normal(1003).astype(np.float32)
    for op, want in (("swiglu", kernels.swiglu(g, u, isa=isa)), ("geglu", kernels.geglu(g, u, isa=isa))):
        y = g.copy()
        _kernels.gated(op, y, u, y, isa)
        assert np.array_equal(y, want)
    for op, want in (("silu", kernels.silu(g, isa=isa)), ("gelu", kernels.gelu(g, isa=isa))):
        y = g.copy()
        _kernels.unary(op, y, y, isa)
        assert np.array_equal(y, want)


# ---- RoPE ----

def _rope_ref(x, pos, n_rot, base, scale, neox, factors=None, mscale=1.0):
    y = x.astype(np.float64).copy()
    half = n_rot // 2
    i = np.arange(half, dtype=np.float64)
    theta = float(pos) * float(scale) * float(base) ** (-2.0 * i / n_rot)
    if factors is not None:
        theta /= factors
    c, s = np.cos(theta) * mscale, np.sin(theta) * mscale
    i0, i1 = (i.astype(int), i.astype(int) + half) if neox else (2 * i.astype(int), 2 * i.astype(int) + 1)
    a, b = y[:, i0].copy(), y[:, i1].copy()
    y[:, i0] = a * c - b * s
    y[:, i1] = a * s + b * c
    return y


# (n_head, head_dim, n_rot): full rotation, partial rotation (Phi-style), an odd number of
# pairs, and head_dim 256 (Gemma 3) whose 128 pairs span two cos/sin chunks.
ROPE_SHAPES = [(3, 64, 64), (2, 64, 32), (1, 80, 42), (4, 256, 256), (1, 6, 2)]


@pytest.mark.parametrize("shape", ROPE_SHAPES)
@pytest.mark.parametrize("neox", [False, True])
@pytest.mark.parametrize("pos,base,scale", [(0, 10000.0, 1.0), (1, 10000.0, 1.0), (17, 10000.0, 1.0),
                                            (8000, 10000.0, 1.0), (8000, 1000000.0, 0.25),
                                            (131071, 500000.0, 1.0), (300, 10000.0, 0.125)])
def test_rope(isa, shape, neox, pos, base, scale, rng):
    n_head, head_dim, n_rot = shape
    x = rng.standard_normal((n_head, head_dim)).astype(np.float32)
    y = kernels.rope(x, pos, n_rot, base, scale, neox, isa=isa)
    ref = _rope_ref(x, pos, n_rot, np.float32(base), np.float32(scale), neox)
    bound = ROPE_TOL * np.max(np.abs(x), axis=1, keepdims=True)
    assert np.all(np.abs(y - ref) <= bound), np.max(np.abs(y - ref))
    assert np.array_equal(y[:, n_rot:], x[:, n_rot:])  # dims beyond n_rot untouched


@pytest.mark.parametrize("shape", ROPE_SHAPES)
@pytest.mark.parametrize("neox", [False, True])
@pytest.mark.parametrize("pos", [3, 8000, 131071])
def test_rope_with_frequency_factors_and_mscale(isa, shape, neox, pos, rng):
    # Llama 3's factors run from 1 to 8 across the pairs; LongRoPE's attention factor ~1.19.
    n_head, head_dim, n_rot = shape
    x = rng.standard_normal((n_head, head_dim)).astype(np.float32)
    factors = rng.uniform(1.0, 8.0, n_rot // 2).astype(np.float32)
    mscale = np.float32(1.19)
    y = kernels.rope(x, pos, n_rot, 500000.0, 1.0, neox, freq_factors=factors, mscale=mscale, isa=isa)
    ref = _rope_ref(x, pos, n_rot, np.float32(500000.0), 1.0, neox, factors.astype(np.float64), float(mscale))
    bound = ROPE_TOL * mscale * np.max(np.abs(x), axis=1, keepdims=True)
    assert np.all(np.abs(y - ref) <= bound), np.max(np.abs(y - ref))
    assert np.array_equal(y[:, n_rot:], x[:, n_rot:])


def test_rope_layouts_differ_and_position_zero_is_identity(isa, rng):
    x = rng.standard_normal((2, 64)).astype(np.float32)
    assert np.array_equal(kernels.rope(x, 0, 64, neox=True, isa=isa), x)
    assert not np.allclose(kernels.rope(x, 5, 64, neox=True, isa=isa), kernels.rope(x, 5, 64, isa=isa))


# ---- f16 conversions ----

ALL_F16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)


def _assert_f32_bits_match(y, ref):
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(y), nan)
    assert np.array_equal(np.signbit(y[nan]), np.signbit(ref[nan]))
    assert np.array_equal(y[~nan].view(np.uint32), ref[~nan].view(np.uint32))


def test_f16_to_f32_every_value(isa):
    ref = ALL_F16.view(np.float16).astype(np.float32)
    y = kernels.f16_to_f32(ALL_F16, isa=isa)
    _assert_f32_bits_match(y, ref)
    # NaN payloads: numpy keeps signaling NaNs signaling, hardware quiets them; every ISA
    # must give the scalar path's bits.
    assert np.array_equal(y.view(np.uint32), kernels.f16_to_f32(ALL_F16, isa="scalar").view(np.uint32))


@pytest.mark.parametrize("n", LENGTHS)
def test_f16_to_f32_tails(isa, n, rng):
    h = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    _assert_f32_bits_match(kernels.f16_to_f32(h, isa=isa), h.view(np.float16).astype(np.float32))


def _f32_specials():
    f16 = lambda bits: float(np.array(bits, np.uint16).view(np.float16))  # noqa: E731
    min_sub, min_norm, max_f16 = f16(0x0001), f16(0x0400), f16(0x7BFF)
    vals = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, 65504.0, 65519.996, 65520.0, -65520.0, 1e10,
            min_sub, min_sub / 2, min_sub * 0.500001, min_sub * 1.5, min_sub * 2.5, -min_sub * 2.5,
            min_norm, min_norm * (1 - 2 ** -11), min_norm * (1 - 2 ** -12), max_f16,
            1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 1.0 + 2 ** -11 + 2 ** -23, 2048.0 + 1.0, 2048.0 + 3.0,
            1e-8, 1e-30, 1e-45, -1e-45, 0.1, 3.14159265]
    return np.array(vals, np.float64).astype(np.float32)


def _to_f16(x):
    with np.errstate(over="ignore"):  # overflow to inf is the expected result
        return x.astype(np.float16)


def _assert_f16_bits_match(y, ref):
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(y), nan)
    assert np.array_equal(np.signbit(y[nan]), np.signbit(ref[nan]))
    assert np.array_equal(y[~nan].view(np.uint16), ref[~nan].view(np.uint16))


def test_f32_to_f16_rounding_ties_denormals_and_specials(isa):
    x = _f32_specials()
    _assert_f16_bits_match(kernels.f32_to_f16(x, isa=isa), _to_f16(x))
    # again with every value in the SIMD body rather than the tail
    x = np.tile(x, 17)
    _assert_f16_bits_match(kernels.f32_to_f16(x, isa=isa), _to_f16(x))


@pytest.mark.parametrize("n", LENGTHS)
def test_f32_to_f16_random_bits(isa, n, rng):
    # random exponents near the f16 range (ties and denormals included) plus any bit pattern
    near = (rng.standard_normal(n) * 2.0 ** rng.integers(-26, 17, n)).astype(np.float32)
    near[::3] = (np.round(near[::3] * 2048) / 2048).astype(np.float32)  # many exact ties
    anybits = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    for x in (near, anybits):
        _assert_f16_bits_match(kernels.f32_to_f16(x, isa=isa), _to_f16(x))


def test_f32_to_f16_nan_payloads_match_scalar(isa):
    bits = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0x7FA00000,
                     0xFFFFE000, 0x7F802000, 0x7FC00001], np.uint32)
    x = np.tile(bits, 3).view(np.float32)
    y = kernels.f32_to_f16(x, isa=isa)
    assert np.isnan(y).all()
    assert np.array_equal(np.signbit(y), np.signbit(x))
    assert np.array_equal(y.view(np.uint16), kernels.f32_to_f16(x, isa="scalar").view(np.uint16))
