"""Edge cases of the AVX2 kernels: block-count tails, float tails, saturation, exact quantizers."""
import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize

from tensorsharp import kernels
from tensorsharp.gguf.types import tensor_type
from tensorsharp.kernels import ACT_Q8K, ACT_Q8X32
from tensorsharp.testing.quants import ACT_OF, f16_round, matmul_ref, random_weights

pytestmark = pytest.mark.skipif("avx2" not in kernels.available_isas(), reason="no AVX2 here")

LEGACY = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "MXFP4")
KQUANTS = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS")
# Byte ranges of each block that hold f16 (MXFP4: E8M0) scales (kept sane); the rest are quants and packed scales.
SCALE_BYTES = {"Q4_0": (0, 2), "Q4_1": (0, 4), "Q5_0": (0, 2), "Q5_1": (0, 4), "Q8_0": (0, 2),
               "IQ4_NL": (0, 2), "MXFP4": (0, 1), "Q2_K": (80, 84), "Q3_K": (108, 110), "Q4_K": (0, 4), "Q5_K": (0, 4),
               "Q6_K": (208, 210), "IQ4_XS": (0, 2)}


def _check(w, type_name, x):
    cols = x.shape[1]
    y = kernels.matmul(w, type_name, x, isa="avx2")
    deq = gguf_dequantize(w, GGMLQuantizationType[type_name]).reshape(w.shape[0], cols)
    y_ref, mag = matmul_ref(deq, x, ACT_OF[type_name])
    assert np.all(np.abs(y - y_ref) <= 2e-5 * mag + 1e-6), np.max(np.abs(y - y_ref) / (mag + 1e-6))


@pytest.mark.parametrize("type_name", LEGACY)
@pytest.mark.parametrize("cols", [32, 64, 96, 160, 224])
def test_legacy_block_tails(type_name, cols, rng):
    # The 32-element kernels work in groups of four blocks; 1..3 leftover blocks take another path.
    w = random_weights(type_name, 5, cols, rng)
    _check(w, type_name, rng.standard_normal((2, cols), dtype=np.float32))


@pytest.mark.parametrize("type_name", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("cols", [1, 7, 8, 37, 100])
def test_float_tails(type_name, cols, rng):
    w = random_weights(type_name, 3, cols, rng)
    _check(w, type_name, rng.standard_normal((2, cols), dtype=np.float32))


@pytest.mark.parametrize("type_name", LEGACY + KQUANTS)
@pytest.mark.parametrize("fill", [0x00, 0xFF, 0x80, 0x7F])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_extreme_quants(type_name, fill, sign, rng):
    # Every quant and packed scale byte set to one pattern (all-max nibbles, int8 -128 ...) against
    # activations that all quantize to +-127: the largest products the int16 lanes must hold.
    cols = 512
    w = random_weights(type_name, 3, cols, rng)
    blocks = w.reshape(3, -1, tensor_type(type_name).type_size)
    lo, hi = SCALE_BYTES[type_name]
    keep = blocks[:, :, lo:hi].copy()
    blocks[:] = fill
    blocks[:, :, lo:hi] = keep
    x = np.full((1, cols), sign, dtype=np.float32)
    x[0, 1::2] = 1.0
    _check(w, type_name, x)


@pytest.mark.parametrize("type_name", LEGACY + KQUANTS)
def test_zero_activations(type_name, rng):
    w = random_weights(type_name, 4, 512, rng)
    y = kernels.matmul(w, type_name, np.zeros((1, 512), np.float32), isa="avx2")
    assert np.array_equal(y, np.zeros_like(y))


def _quantize_np(x: np.ndarray, bs: int):
    blocks = x.reshape(-1, bs)
    d = (np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d > 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.clip(np.round(blocks * inv), -127, 127).astype(np.int8)  # ties to even
    return d[:, 0], q


@pytest.mark.parametrize("scale", [1.0, 1e-30, 1e30])
def test_activation_quantizers_exact(scale, rng):
    x = (rng.standard_normal(1024) * scale).astype(np.float32)
    x[:256] = 0.0                                          # an all-zero block of either size
    x[256:288] = np.arange(32) - 15.5                      # d = 1 here: every value an exact .5 tie
    x[256] = 127.0
    d, q = _quantize_np(x, 32)
    d = f16_round(d)  # q8x32 stores its scale at half precision
    raw = kernels.quantize_activations(x, ACT_Q8X32, isa="avx2").reshape(-1, 40)
    assert np.array_equal(raw[:, 0:4].copy().view(np.float32)[:, 0], d)
    assert np.array_equal(raw[:, 8:].view(np.int8), q)
    s = (d * q.astype(np.int32).sum(axis=1).astype(np.float32)).astype(np.float32)
    assert np.array_equal(raw[:, 4:8].copy().view(np.float32)[:, 0], s)

    d, q = _quantize_np(x, 256)
    raw = kernels.quantize_activations(x, ACT_Q8K, isa="avx2").reshape(-1, 292)
    assert np.array_equal(raw[:, 0:4].copy().view(np.float32)[:, 0], d)
    assert np.array_equal(raw[:, 4:260].view(np.int8), q)
    bsums = q.reshape(-1, 16, 16).astype(np.int16).sum(axis=2)
    assert np.array_equal(raw[:, 260:].copy().view(np.int16), bsums)
