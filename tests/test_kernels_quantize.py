"""Activation quantization (q8x32, q8k) on every ISA level against the numpy oracle of the contract."""
import numpy as np
import pytest

from tensorsharp import kernels
from tensorsharp.kernels import ACT_Q8K, ACT_Q8X32
from tensorsharp.testing.quants import f16_round, quantize_act_ref

# Byte layouts of ts_block_q8x32 and ts_block_q8k (csrc/include/ts/types.h).
BLOCK_DTYPE = {
    ACT_Q8X32: np.dtype([("d", "<f4"), ("s", "<f4"), ("qs", "i1", 32)]),
    ACT_Q8K: np.dtype([("d", "<f4"), ("qs", "i1", 256), ("bsums", "<i2", 16)]),
}
BLOCK = {ACT_Q8X32: 32, ACT_Q8K: 256}
ACTS = pytest.mark.parametrize("act", [ACT_Q8X32, ACT_Q8K], ids=["q8x32", "q8k"])
F32_MAX = np.finfo(np.float32).max


def _decode(raw: np.ndarray, act: int) -> np.ndarray:
    assert raw.size % BLOCK_DTYPE[act].itemsize == 0
    return raw.view(BLOCK_DTYPE[act])


def _contract(x: np.ndarray, act: int):
    """d per block and v = x * id per element, in float32 exactly as the contract computes them."""
    blocks = x.reshape(-1, BLOCK[act])
    d = np.abs(blocks).max(axis=1) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    return d, blocks * inv[:, None]


def _rows(kind: str, n_blocks: int, act: int, rng: np.random.Generator) -> np.ndarray:
    n = n_blocks * BLOCK[act]
    x = rng.standard_normal(n, dtype=np.float32)
    blocks = x.reshape(n_blocks, -1)
    if kind == "zeros":
        x[:] = 0
    elif kind == "huge":
        blocks *= np.float32(1e37)
        blocks[0, :2] = [F32_MAX, -F32_MAX]
    elif kind == "tiny":
        blocks *= np.float32(1e-30)
        blocks[0, 1:] = np.float32(1e-42) * np.sign(blocks[0, 1:])  # subnormals next to a normal max
        blocks[0, 0] = 1.0
    elif kind == "mixed":  # magnitudes from 1e-30 to 1e30 block by block, and a zero block
        blocks *= (10.0 ** rng.uniform(-30, 30, size=(n_blocks, 1))).astype(np.float32)
        blocks[n_blocks // 2] = 0
    return x


def _check(x: np.ndarray, act: int, isa: str):
    got = _decode(kernels.quantize_activations(x, act, isa=isa), act)
    d_ref, v = _contract(x, act)
    d = got["d"]
    qs = got["qs"].astype(np.int32)
    stored = f16_round(d_ref) if act == ACT_Q8X32 else d_ref
    assert np.array_equal(d.view(np.uint32), stored.view(np.uint32))
    assert np.all(np.abs(qs) <= 127)
    finite = np.isfinite(v)
    assert np.array_equal(qs[finite], np.rint(v[finite]))
    deq = qs.astype(np.float64) * d.astype(np.float64)[:, None]
    assert np.array_equal(deq, quantize_act_ref(x, act).reshape(deq.shape))
    if act == ACT_Q8X32:
        s_ref = stored * qs.sum(axis=1).astype(np.float32)
        assert np.array_equal(got["s"].view(np.uint32), s_ref.view(np.uint32))
    else:
        assert np.array_equal(got["bsums"], qs.reshape(-1, 16, 16).sum(axis=2))
    return got


@ACTS
@pytest.mark.parametrize("kind", ["normal", "zeros", "huge", "tiny", "mixed"])
@pytest.mark.parametrize("n_blocks", [1, 3, 8])
def test_matches_contract(isa, act, kind, n_blocks, rng):
    x = _rows(kind, n_blocks, act, rng)
    got = _check(x, act, isa)
    if kind == "zeros":
        assert not got["d"].any() and not got["qs"].any()
    if kind == "huge":
        assert got["qs"][0, 0] == 127 and got["qs"][0, 1] == -127


@ACTS
def test_ties_round_to_even(isa, act):
    """max|x| = 127 gives d = 1 and id = 1, so halves of the block are exact ties; every level
    rounds them to even, as ggml's x86 quantizers do."""
    x = np.zeros(BLOCK[act], dtype=np.float32)
    x[0] = 127
    x[1:9] = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5]
    got = _check(x, act, isa)
    assert list(got["qs"][0, 1:9]) == [0, 0, 2, -2, 2, -2, 126, -126]


@ACTS
def test_scalar_degenerate_blocks_stay_in_range(act):
    """A max below ~3.7e-37 makes 1/d overflow to inf; the quants must still be sane."""
    x = np.zeros(BLOCK[act], dtype=np.float32)
    x[:3] = [1e-37, -1e-37, 3e-38]
    got = _decode(kernels.quantize_activations(x, act, isa="scalar"), act)
    assert got["d"][0] == np.float32(1e-37) / np.float32(127)
    assert list(got["qs"][0, :4]) == [127, -127, 127, 0]
    assert not got["qs"][0, 4:].any()


@ACTS
def test_sizes_not_whole_blocks_are_rejected(act):
    with pytest.raises(ValueError):
        kernels.quantize_activations(np.zeros(BLOCK[act] + 1, np.float32), act)
