"""Quantized matmul on every ISA level against the exact product and against the scalar path."""
import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize

from tensorsharp import kernels
from tensorsharp.testing.quants import ACT_OF, matmul_ref, random_weights

TYPES = kernels.SUPPORTED_TYPES
# Shapes: a single row, odd row counts, widths of several blocks and a lone block.
SHAPES = [(1, 256), (7, 256), (33, 512), (130, 768), (5, 2816)]


def _dequant_ref(raw: np.ndarray, type_name: str, cols: int) -> np.ndarray:
    qt = GGMLQuantizationType[type_name]
    return gguf_dequantize(raw, qt).reshape(raw.shape[0], cols)


@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n", [1, 3, 17])
def test_matmul_matches_exact_product(isa, type_name, shape, n, rng):
    rows, cols = shape
    if not kernels._kernels.has_dot(kernels._type_id(type_name), isa):
        pytest.skip(f"{type_name} has no kernel on {isa}")
    w = random_weights(type_name, rows, cols, rng)
    x = rng.standard_normal((n, cols), dtype=np.float32)
    y = kernels.matmul(w, type_name, x, isa=isa)
    y_ref, mag = matmul_ref(_dequant_ref(w, type_name, cols), x, ACT_OF[type_name])
    # Only float rounding separates the kernel from the exact product of the quantized inputs.
    assert np.all(np.abs(y - y_ref) <= 2e-5 * mag + 1e-6), np.max(np.abs(y - y_ref) / (mag + 1e-6))


@pytest.mark.parametrize("type_name", TYPES)
def test_simd_matches_scalar(isa, type_name, rng):
    if isa == "scalar":
        pytest.skip("the scalar path is the reference")
    tid = kernels._type_id(type_name)
    if not (kernels._kernels.has_dot(tid, isa) and kernels._kernels.has_dot(tid, "scalar")):
        pytest.skip(f"{type_name} lacks a kernel on {isa} or scalar")
    rows, cols = 37, 1536
    w = random_weights(type_name, rows, cols, rng)
    x = rng.standard_normal((5, cols), dtype=np.float32)
    y = kernels.matmul(w, type_name, x, isa=isa)
    y0 = kernels.matmul(w, type_name, x, isa="scalar")
    _, mag = matmul_ref(_dequant_ref(w, type_name, cols), x, ACT_OF[type_name])
    assert np.all(np.abs(y - y0) <= 1e-5 * mag + 1e-6)


@pytest.mark.parametrize("type_name", TYPES)
def test_a_row_does_not_depend_on_the_rows_beside_it(isa, type_name, rng):
    # Bit for bit: a token decoded alone and the same token inside a prompt batch must get the
    # same sums, or a seeded reply changes with what the KV cache held (tests/server/test_seeds.py).
    if not kernels._kernels.has_dot(kernels._type_id(type_name), isa):
        pytest.skip(f"{type_name} has no kernel on {isa}")
    if not kernels.rows_exact([kernels._type_id(type_name)], isa):
        pytest.skip(f"{type_name} on {isa}: a lone row takes the matvec, whose sums differ (kernels.rows_exact)")
    w = random_weights(type_name, 70, 512, rng)
    x = rng.standard_normal((19, 512), dtype=np.float32)
    y = kernels.matmul(w, type_name, x, isa=isa)
    for a, b in ((0, 1), (5, 6), (3, 5), (2, 19)):
        assert np.array_equal(kernels.matmul(w, type_name, x[a:b], isa=isa), y[a:b]), (a, b)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_thread_counts_agree(n_threads, rng):
    w = random_weights("Q4_K", 100, 512, rng)
    x = rng.standard_normal((4, 512), dtype=np.float32)
    y1 = kernels.matmul(w, "Q4_K", x, n_threads=1)
    assert np.array_equal(kernels.matmul(w, "Q4_K", x, n_threads=n_threads), y1)


def test_matmul_rejects_bad_sizes(rng):
    w = random_weights("Q4_0", 4, 64, rng)
    with pytest.raises(ValueError):
        kernels.matmul(w, "Q4_0", np.zeros((1, 96), np.float32))
    with pytest.raises(ValueError):
        kernels.matmul(w[:, :30], "Q4_0", np.zeros((1, 64), np.float32))
    with pytest.raises(NotImplementedError):
        kernels.matmul(w, "TQ1_0", np.zeros((1, 64), np.float32))


@pytest.mark.parametrize("type_name", ["Q4_0", "Q5_0", "Q8_0", "Q4_K", "F16"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_matvec_stream_ends_with_the_last_product(type_name, n_threads, rng):
    from tensorsharp import _kernels
    from tensorsharp.gguf.types import tensor_type
    cols = 256
    ws = [random_weights(type_name, 37, cols, rng) for _ in range(3)]
    x = rng.standard_normal(cols).astype(np.float32)
    y = np.empty(37, np.float32)
    _kernels.matvec_stream(ws, tensor_type(type_name).id, cols, x, y, n_threads)
    np.testing.assert_array_equal(y, kernels.matmul(ws[-1], type_name, x[None], n_threads=1)[0])
    with pytest.raises(ValueError):
        _kernels.matvec_stream([ws[0], ws[1][:30]], tensor_type(type_name).id, cols, x, y, n_threads)
