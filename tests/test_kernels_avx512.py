"""AVX-512 quantized kernels: row tails, reads fenced by guard pages, and saturation edges."""
import ctypes
import mmap

import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize

from tensorsharp import kernels
from tensorsharp.gguf.types import tensor_type
from tensorsharp.testing.quants import _E8M0_FIELDS, _F16_FIELDS, ACT_OF, matmul_ref, random_weights

LEVELS = [lv for lv in ("avx512", "avx512vnni") if lv in kernels.available_isas()]
pytestmark = pytest.mark.skipif(not LEVELS, reason="this CPU or build has no AVX-512 level")

LEGACY = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "MXFP4")
KQUANTS = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS")
IQUANTS = ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M")  # extremes: test_kernels_iquants
FLOATS = ("F32", "F16", "BF16")
# Row lengths in blocks: the legacy kernels work on groups of 16 blocks and pairs inside them,
# so lone blocks, short last groups and odd tails after full groups all take separate paths.
BLOCK_COUNTS = {"legacy": (1, 2, 3, 15, 16, 17, 19, 33, 47), "k": (1, 2, 3, 5), "float": (1, 15, 17, 35, 100)}


def _family(type_name: str) -> str:
    return "legacy" if type_name in LEGACY else "k" if type_name in KQUANTS + IQUANTS else "float"


def _cols(type_name: str, nblocks: int) -> int:
    return nblocks * tensor_type(type_name).block_size


def _check_exact(w: np.ndarray, type_name: str, x: np.ndarray, level: str) -> None:
    rows, cols = w.shape[0], x.shape[1]
    deq = gguf_dequantize(np.ascontiguousarray(w), GGMLQuantizationType[type_name]).reshape(rows, cols)
    y = kernels.matmul(w, type_name, x, n_threads=1, isa=level)
    y_ref, mag = matmul_ref(deq, x, ACT_OF[type_name])
    assert np.all(np.abs(y - y_ref) <= 2e-5 * mag + 1e-6), np.max(np.abs(y - y_ref) / (mag + 1e-6))


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("type_name", LEGACY + KQUANTS + IQUANTS + FLOATS)
def test_every_row_length_matches_exact_product(level, type_name, rng):
    for nblocks in BLOCK_COUNTS[_family(type_name)]:
        cols = _cols(type_name, nblocks)
        w = random_weights(type_name, 5, cols, rng)
        _check_exact(w, type_name, rng.standard_normal((3, cols), dtype=np.float32), level)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_PROT_NONE = 0


def _fenced(nbytes: int, at_end: bool) -> tuple[mmap.mmap, np.ndarray]:
    """nbytes of writable memory that touch an inaccessible page at their end (or start)."""
    page = mmap.PAGESIZE
    inner = (nbytes + page - 1) // page * page
    mem = mmap.mmap(-1, inner + 2 * page)
    buf = np.frombuffer(mem, dtype=np.uint8)
    base = buf.ctypes.data
    for guard in (base, base + page + inner):
        assert _libc.mprotect(guard, page, _PROT_NONE) == 0, ctypes.get_errno()
    start = page + (inner - nbytes if at_end else 0)
    return mem, buf[start:start + nbytes]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("type_name", LEGACY + KQUANTS + IQUANTS + FLOATS)
@pytest.mark.parametrize("at_end", [True, False])
def test_weight_reads_stay_inside_the_matrix(level, type_name, at_end, rng):
    """A read past either end of the weights faults on a guard page (and kills the run)."""
    rows = 3
    for nblocks in BLOCK_COUNTS[_family(type_name)]:
        cols = _cols(type_name, nblocks)
        w = random_weights(type_name, rows, cols, rng)
        mem, fenced = _fenced(w.size, at_end)
        fenced[:] = w.reshape(-1)
        _check_exact(fenced.reshape(w.shape), type_name, rng.standard_normal((2, cols), dtype=np.float32), level)
        del fenced
        mem.close()


# Fill byte that puts every stored quant (and sub-block scale) at its largest unsigned value,
# the operand whose int16 pair sums saturate first without VNNI: all ones, except Q8_0 (-128,
# magnitude 128), the IQ4 codebooks (index 0 is -127) and MXFP4 (index 7 is 12, shifted to 24).
_EXTREME_FILL = {"Q8_0": 0x80, "IQ4_NL": 0x00, "IQ4_XS": 0x00, "MXFP4": 0x77}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("type_name", LEGACY + KQUANTS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_largest_quants_against_largest_activations(level, type_name, sign, rng):
    """Every product at its largest size and all of one sign: nothing may saturate."""
    nblocks = 19 if type_name in LEGACY else 3
    cols = _cols(type_name, nblocks)
    w = random_weights(type_name, 4, cols, rng)
    blocks = w.reshape(4, nblocks, tensor_type(type_name).type_size)
    kept = blocks.copy()
    blocks[:] = _EXTREME_FILL.get(type_name, 0xFF)
    for off in _F16_FIELDS.get(type_name, ()):  # keep the finite random f16 scales
        blocks[:, :, off:off + 2] = kept[:, :, off:off + 2]
    for off in _E8M0_FIELDS.get(type_name, ()):
        blocks[:, :, off] = kept[:, :, off]
    _check_exact(w, type_name, np.full((2, cols), 3.0 * sign, dtype=np.float32), level)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("type_name", LEGACY + KQUANTS)
def test_zero_activation_blocks(level, type_name, rng):
    """Blocks of zeros quantize to d = 0; mixed with ordinary blocks they must add nothing."""
    cols = _cols(type_name, 19 if type_name in LEGACY else 3)
    w = random_weights(type_name, 6, cols, rng)
    x = rng.standard_normal((2, cols), dtype=np.float32)
    bs = 32 if type_name in LEGACY else 256
    x.reshape(2, -1, bs)[:, ::2] = 0.0
    _check_exact(w, type_name, x, level)
