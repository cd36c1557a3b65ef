"""Codebook i-quants (IQ2_XXS .. IQ1_M): generated grids, IQ1_M's split scale, extreme blocks on every level."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize

from tensorsharp import kernels
from tensorsharp.gguf.types import tensor_type
from tensorsharp.testing.quants import _F16_FIELDS, ACT_OF, matmul_ref, random_weights, set_iq1_m_scale

IQUANTS = ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M")
ROOT = Path(__file__).resolve().parent.parent


def test_grids_are_generated_from_gguf(tmp_path):
    """csrc/iq_grids.c is what tools/gen_iq_grids.py derives from the installed gguf-py."""
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_iq_grids.py"), "--check"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def test_iq1_m_scale_over_the_whole_f16_range(rng):
    """IQ1_M's d, spread over four nibbles, rounds as numpy does for every kind of half."""
    n_blocks = 512
    blocks = rng.integers(0, 256, size=(n_blocks, 56), dtype=np.uint8)
    d = rng.integers(0, 1 << 16, size=n_blocks, dtype=np.uint16)
    d[~np.isfinite(d.view(np.float16))] = 0x3C00
    d[:4] = [0x0001, 0x03FF, 0x7BFF, 0x8000]  # smallest and largest subnormal, max, -0
    set_iq1_m_scale(blocks, d.view(np.float16))
    raw = blocks.reshape(-1)
    y = kernels.dequantize(raw, "IQ1_M", n_blocks * 256, isa="scalar")
    ref = gguf_dequantize(raw, GGMLQuantizationType.IQ1_M).reshape(-1)
    assert np.all(np.isfinite(y))
    assert np.array_equal(_bits(y), _bits(ref))


def _fill(type_name: str, rows: int, nblocks: int, byte: int, rng) -> np.ndarray:
    """Blocks whose every byte but the f16 scale is `byte`: 0xFF is the largest grid index, every
    sign negative (where signs are stored bits) and the largest sub-block scales."""
    w = random_weights(type_name, rows, nblocks * 256, rng)
    blocks = w.reshape(rows, nblocks, tensor_type(type_name).type_size)
    kept = blocks.copy()
    blocks[:] = byte
    for off in _F16_FIELDS.get(type_name, ()):
        blocks[:, :, off:off + 2] = kept[:, :, off:off + 2]
    if type_name == "IQ1_M":
        set_iq1_m_scale(blocks, np.full((rows, nblocks), 2.0 ** -6, dtype=np.float16))
    return w


def _check_exact(w, type_name, x, isa):
    rows, cols = w.shape[0], x.shape[1]
    deq = gguf_dequantize(np.ascontiguousarray(w), GGMLQuantizationType[type_name]).reshape(rows, cols)
    y = kernels.matmul(w, type_name, x, n_threads=1, isa=isa)
    y_ref, mag = matmul_ref(deq, x, ACT_OF[type_name])
    assert np.all(np.abs(y - y_ref) <= 2e-5 * mag + 1e-6), np.max(np.abs(y - y_ref) / (mag + 1e-6))


@pytest.mark.parametrize("type_name", IQUANTS)
def test_extreme_blocks_against_largest_activations(isa, type_name, rng):
    """Largest grid values and scales, all-negative and all-positive signs, activations all at +-127:
    the int16 pair sums at their largest must not saturate."""
    for byte in (0xFF, 0x00, 0x7F, 0x80):
        w = _fill(type_name, 3, 3, byte, rng)
        for sign in (1.0, -1.0):
            _check_exact(w, type_name, np.full((2, 768), 3.0 * sign, dtype=np.float32), isa)


@pytest.mark.parametrize("type_name", IQUANTS)
def test_zero_activation_blocks_add_nothing(isa, type_name, rng):
    w = random_weights(type_name, 6, 768, rng)
    x = rng.standard_normal((2, 768), dtype=np.float32)
    x[:, 256:512] = 0.0
    _check_exact(w, type_name, x, isa)
    y = kernels.matmul(w, type_name, np.zeros((1, 768), np.float32), isa=isa)
    assert np.array_equal(y, np.zeros_like(y))


@pytest.mark.parametrize("type_name", IQUANTS)
def test_matvec_is_the_row_by_row_dot(isa, type_name, rng):
    """Decode's one-row product over many rows equals the per-row products bit for bit."""
    w = random_weights(type_name, 41, 1280, rng)
    x = rng.standard_normal((1, 1280), dtype=np.float32)
    y = kernels.matmul(w, type_name, x, n_threads=2, isa=isa)
    rows = np.concatenate([kernels.matmul(w[r:r + 1], type_name, x, n_threads=1, isa=isa) for r in range(41)], axis=1)
    assert np.array_equal(y, rows)
