"""Gemm (several activation rows per weight row) against one-row matmuls on every ISA level."""
import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize

from tensorsharp import kernels
from tensorsharp.gguf.types import tensor_type
from tensorsharp.testing.quants import ACT_OF, matmul_ref, random_weights

TYPES = kernels.SUPPORTED_TYPES


def _widths(type_name: str) -> list[int]:
    """Widths of one block, an odd number of blocks, and (32-element blocks) one past a multiple of 64."""
    bs = tensor_type(type_name).block_size
    return [bs, 3 * bs, 65 * bs] if bs == 32 else [bs, 5 * bs]


@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("rows", [1, 7, 33])
@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 9, 13])
def test_gemm_matches_row_by_row(isa, type_name, rows, n, rng):
    # AVX-512 transposes unpacked weights from 6 tokens on, below it sums rows in place.
    for cols in _widths(type_name):
        _check_against_rows(isa, type_name, rows, cols, n, rng)


@pytest.mark.parametrize("type_name", TYPES)
def test_gemm_many_rows_and_tokens(isa, type_name, rng):
    # Two full 32-row panels and a partial one, several column chunks with a partial last one,
    # and a partial last tile of tokens.
    bs = tensor_type(type_name).block_size
    _check_against_rows(isa, type_name, 70, bs * (65 if bs == 32 else 5), 37, rng)


def _check_against_rows(isa, type_name, rows, cols, n, rng):
    tid = kernels._type_id(type_name)
    if not kernels._kernels.has_dot(tid, isa):
        pytest.skip(f"{type_name} has no kernel on {isa}")
    w = random_weights(type_name, rows, cols, rng)
    x = rng.standard_normal((n, cols), dtype=np.float32)
    y = kernels.matmul(w, type_name, x, isa=isa)
    # One activation row at a time never takes the gemm path.
    y1 = np.concatenate([kernels.matmul(w, type_name, x[t:t + 1], isa=isa) for t in range(n)])
    w_deq = gguf_dequantize(w, GGMLQuantizationType[type_name]).reshape(rows, cols)
    _, mag = matmul_ref(w_deq, x, ACT_OF[type_name])
    assert np.all(np.abs(y - y1) <= 1e-5 * mag + 1e-6), (cols, np.max(np.abs(y - y1) / (mag + 1e-6)))


def test_gemm_zero_scales_stay_finite(isa, rng):
    # An all-zero activation block has d = 0 and must add nothing, also next to a padded pair.
    w = random_weights("Q4_1", 5, 96, rng)
    x = rng.standard_normal((3, 96), dtype=np.float32)
    x[1, 32:64] = 0.0
    x[2, 64:] = 0.0
    y = kernels.matmul(w, "Q4_1", x, isa=isa)
    y1 = np.concatenate([kernels.matmul(w, "Q4_1", x[t:t + 1], isa=isa) for t in range(3)])
    assert np.all(np.isfinite(y))
    assert np.allclose(y, y1, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("type_name", TYPES)
def test_gemm_result_does_not_depend_on_the_batch(isa, type_name, rng):
    # Prompt chunks and decode batches of any size (two or more tokens) give a token the same
    # bits, few-token calls included (AVX-512: up to 16 tokens unpack in registers, more in panels).
    tid = kernels._type_id(type_name)
    if not kernels._kernels.has_dot(tid, isa):
        pytest.skip(f"{type_name} has no kernel on {isa}")
    bs = tensor_type(type_name).block_size
    cols = bs * (21 if bs == 32 else 3)
    w = random_weights(type_name, 37, cols, rng)
    x = rng.standard_normal((40, cols), dtype=np.float32)
    y = kernels.matmul(w, type_name, x, isa=isa)
    for a, b in [(0, 2), (1, 4), (3, 8), (5, 16), (0, 13), (0, 16), (20, 37)]:
        assert np.array_equal(kernels.matmul(w, type_name, x[a:b], isa=isa), y[a:b]), (a, b)


@pytest.mark.parametrize("type_name", TYPES)
def test_one_row_gets_its_batch_bits_where_the_table_says_so(isa, type_name, rng):
    # Speculative decoding relies on it: a position verified among drafted rows must score as it
    # would decoded alone (kernels.rows_exact, checked by the scheduler's build).
    tid = kernels._type_id(type_name)
    if not kernels._kernels.has_dot(tid, isa) or not kernels.rows_exact([tid], isa):
        pytest.skip(f"{type_name} on {isa}: a lone row takes the matvec, with other bits")
    bs = tensor_type(type_name).block_size
    cols = bs * (21 if bs == 32 else 3)
    w = random_weights(type_name, 37, cols, rng)
    x = rng.standard_normal((6, cols), dtype=np.float32)
    y = kernels.matmul(w, type_name, x, isa=isa)
    for t in range(len(x)):
        assert np.array_equal(kernels.matmul(w, type_name, x[t:t + 1], isa=isa), y[t:t + 1]), t
