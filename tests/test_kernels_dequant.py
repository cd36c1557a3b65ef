"""Dequantization: the scalar path equals gguf.quants bit for bit; every ISA level agrees with it."""
import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize

from tensorsharp import kernels
from tensorsharp.gguf.types import tensor_type
from tensorsharp.testing.quants import _F16_FIELDS, random_weights

TYPES = kernels.SUPPORTED_TYPES
BLOCK_COUNTS = [1, 2, 9, 64]


def _gguf(raw: np.ndarray, type_name: str) -> np.ndarray:
    return gguf_dequantize(raw, GGMLQuantizationType[type_name]).reshape(-1)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("n_blocks", BLOCK_COUNTS)
@pytest.mark.parametrize("rows", [1, 3])
def test_scalar_matches_gguf_bit_for_bit(type_name, n_blocks, rows, rng):
    cols = n_blocks * tensor_type(type_name).block_size
    raw = random_weights(type_name, rows, cols, rng)
    y = kernels.dequantize(raw.reshape(-1), type_name, rows * cols, isa="scalar")
    ref = _gguf(raw, type_name)
    assert y.shape == ref.shape == (rows * cols,)
    assert np.all(np.isfinite(y))
    assert np.array_equal(_bits(y), _bits(ref))


@pytest.mark.parametrize("type_name", [t for t in TYPES if t in _F16_FIELDS])
def test_scalar_matches_gguf_over_the_whole_f16_scale_range(type_name, rng):
    """Scales anywhere in f16 (subnormals, 65504, negative) round as numpy rounds them."""
    t = tensor_type(type_name)
    n_blocks = 512
    raw = rng.integers(0, 256, size=(n_blocks, t.type_size), dtype=np.uint8)
    for off in _F16_FIELDS[type_name]:
        scale = rng.integers(0, 1 << 16, size=n_blocks, dtype=np.uint16)
        scale[~np.isfinite(scale.view(np.float16))] = 0x3C00
        scale[:4] = [0x0001, 0x03FF, 0x7BFF, 0x8000]  # smallest and largest subnormal, max, -0
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    raw = raw.reshape(-1)
    y = kernels.dequantize(raw, type_name, n_blocks * t.block_size, isa="scalar")
    ref = _gguf(raw, type_name)
    assert np.all(np.isfinite(y))
    assert np.array_equal(_bits(y), _bits(ref))


def test_mxfp4_every_scale_and_code(rng):
    """Every E8M0 scale (the subnormal 0 and 1, 255 read as 2^127 as gguf.quants does) times every
    code pair, as gguf.quants dequantizes them."""
    t = tensor_type("MXFP4")
    raw = np.zeros((256, t.type_size), dtype=np.uint8)
    raw[:, 0] = np.arange(256)
    raw[:, 1:] = rng.integers(0, 256, size=(256, t.type_size - 1), dtype=np.uint8)
    raw[:, 1] = np.arange(256)  # every pair of codes once
    y = kernels.dequantize(raw.reshape(-1), "MXFP4", 256 * t.block_size, isa="scalar")
    with np.errstate(over="ignore"):
        ref = _gguf(raw, "MXFP4")
    assert np.array_equal(_bits(y), _bits(ref))


@pytest.mark.parametrize("type_name", ["F16", "BF16"])
def test_every_finite_half_value(type_name):
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    ref = _gguf(bits.view(np.uint8), type_name)
    keep = np.isfinite(ref)
    raw = bits[keep]
    y = kernels.dequantize(raw.view(np.uint8), type_name, raw.size, isa="scalar")
    assert np.array_equal(_bits(y), _bits(ref[keep]))


@pytest.mark.parametrize("type_name", TYPES)
def test_every_isa_matches_scalar(isa, type_name, rng):
    if isa == "scalar":
        pytest.skip("the scalar path is the reference")
    rows, cols = 5, 9 * tensor_type(type_name).block_size
    raw = random_weights(type_name, rows, cols, rng).reshape(-1)
    y = kernels.dequantize(raw, type_name, rows * cols, isa=isa)
    y0 = kernels.dequantize(raw, type_name, rows * cols, isa="scalar")
    assert np.all(np.abs(y - y0) <= 1e-6 * np.abs(y0))


def test_bad_sizes_are_rejected(rng):
    raw = random_weights("Q4_K", 1, 512, rng).reshape(-1)
    with pytest.raises(ValueError):
        kernels.dequantize(raw, "Q4_K", 300)  # not a whole number of blocks
    with pytest.raises(ValueError):
        kernels.dequantize(raw[:-1], "Q4_K", 512)  # one byte short
    with pytest.raises(ValueError):
        kernels.dequantize(raw, "Q4_K", 768)  # more blocks than bytes
    with pytest.raises(NotImplementedError):
        kernels.dequantize(raw, "TQ1_0", 256)


def test_extra_bytes_are_ignored(rng):
    raw = random_weights("Q6_K", 2, 256, rng).reshape(-1)
    y = kernels.dequantize(raw, "Q6_K", 256, isa="scalar")
    assert np.array_equal(_bits(y), _bits(_gguf(raw[:210], "Q6_K")))
