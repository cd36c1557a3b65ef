"""Load-time repacking (csrc/repack.c) against a numpy statement of the layout, and the packed gemm
against the unpacked kernels and gguf.quants dequantization on every ISA level that has it."""
import mmap
import sys

import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize

from tensorsharp import kernels
from tensorsharp.gguf.types import tensor_type
from tensorsharp.testing.quants import ACT_OF, matmul_ref, random_weights

TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"]
HEAD = {"Q4_0": 2, "Q4_1": 4, "Q5_0": 6, "Q8_0": 2}  # bytes of a block before its quants
PIECES = {"Q4_K": 144, "Q6_K": 208}  # bytes of a k-quant block laid out in 4-byte pieces
# The order of a packed block's pieces: the file's, but Q6_K's in the order its gemm reads them.
PIECE_ORDER = {"Q4_K": list(range(36)),
               "Q6_K": [*range(48, 52), *[p for h in (0, 1) for p in (*range(16 * h, 16 * h + 8), *range(32 + 8 * h, 40 + 8 * h),
                                                                      *range(16 * h + 8, 16 * h + 16))]]}


def _cols(type_name: str, blocks: int) -> int:
    return blocks * tensor_type(type_name).block_size


def _packed_ref(w: np.ndarray, type_name: str) -> np.ndarray:
    """csrc/include/ts/repack.h's layout written out with numpy."""
    rows, row_bytes = w.shape
    bs = tensor_type(type_name).type_size
    nb = row_bytes // bs
    blk = w.reshape(rows // 16, 16, nb, bs).transpose(0, 2, 1, 3)  # (group, block, row, bytes)
    if type_name in PIECES:
        pb = PIECES[type_name]
        pieces = blk[..., :pb].reshape(rows // 16, nb, 16, pb // 4, 4).transpose(0, 1, 3, 2, 4)  # (g, b, piece, row, 4)
        pieces = pieces[:, :, PIECE_ORDER[type_name]]
        parts = [pieces.reshape(rows // 16, nb, -1), blk[..., pb:].reshape(rows // 16, nb, -1)]  # then Q6_K's d[16]
        return np.concatenate(parts, axis=-1).reshape(rows, row_bytes)
    head = HEAD[type_name]
    parts = [blk[..., 0:2].reshape(rows // 16, nb, 32)]  # d of the 16 rows
    if type_name == "Q4_1":
        parts.append(blk[..., 2:4].reshape(rows // 16, nb, 32))  # m
    if type_name == "Q5_0":
        qh = np.unpackbits(blk[..., 2:6], axis=-1, bitorder="little")  # (g, b, row, element)
        bits = qh.reshape(rows // 16, nb, 16, 8, 4).transpose(0, 1, 3, 2, 4)  # (g, b, j, row, k)
        parts.append(np.packbits(bits.reshape(rows // 16, nb, 8, 64), axis=-1, bitorder="little").reshape(rows // 16, nb, 64))
    qs = blk[..., head:].reshape(rows // 16, nb, 16, -1, 4).transpose(0, 1, 3, 2, 4)  # (g, b, j, row, 4 bytes)
    parts.append(qs.reshape(rows // 16, nb, -1))
    return np.concatenate(parts, axis=-1).reshape(rows, row_bytes)


@pytest.mark.parametrize("type_name", TYPES)
def test_repack_layout(type_name, rng):
    cols = _cols(type_name, 3)
    w = random_weights(type_name, 48, cols, rng)
    packed = kernels.repack(w, type_name, cols)
    assert packed.shape == w.shape
    assert np.array_equal(packed, _packed_ref(w, type_name))
    assert packed.ctypes.data % kernels.PACK_ALIGN == 0  # whole cache lines per register


def test_packed_copies_start_on_a_cache_line(rng):
    # Large arrays are where numpy's allocator starts 16 bytes past a line; a model's matrices are.
    for rows in (16, 4096):
        assert kernels.empty_packed((rows, 2736)).ctypes.data % kernels.PACK_ALIGN == 0


def test_arena_matrices_start_on_cache_lines_and_do_not_overlap():
    arena = kernels.WeightArena()
    shapes = [(16, 100), (4096, 2736), (32, 37), (16, 1)]
    mats = [arena.empty(shape) for shape in shapes]
    spans = []
    for m, shape in zip(mats, shapes):
        assert m.shape == shape and m.dtype == np.uint8 and m.flags.c_contiguous
        assert m.ctypes.data % kernels.PACK_ALIGN == 0
        m[...] = len(spans) + 1
        spans.append((m.ctypes.data, m.ctypes.data + m.nbytes))
    spans.sort()
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    del arena  # the matrices hold their mappings
    for i, m in enumerate(mats):
        assert np.all(m == i + 1)


def test_arena_takes_a_matrix_larger_than_its_chunk(monkeypatch):
    monkeypatch.setattr(kernels.WeightArena, "CHUNK", 1 << 20)
    arena = kernels.WeightArena()
    small, big, after = arena.empty((16, 1000)), arena.empty((16, 200_000)), arena.empty((16, 1000))
    big[...] = 7
    small[...] = 1
    after[...] = 2
    assert np.all(big == 7) and np.all(small == 1)


def _vm_flags(address: int) -> list[str]:
    """The VmFlags of the mapping holding address, from /proc/self/smaps."""
    flags, inside = [], False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                flags = line.split()[1:]
    return flags


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE"),
                    reason="transparent huge pages are Linux's")
def test_arena_memory_is_advised_for_huge_pages():
    m = kernels.WeightArena().empty((4096, 2736))
    assert m.ctypes.data % kernels.HUGE_PAGE == 0
    assert "hg" in _vm_flags(m.ctypes.data)


def test_repack_refuses_partial_groups_and_other_types(rng):
    with pytest.raises(ValueError):
        kernels.repack(random_weights("Q4_0", 17, 64, rng), "Q4_0", 64)
    with pytest.raises(ValueError):
        kernels.repack(random_weights("Q5_K", 16, 256, rng), "Q5_K", 256)
    with pytest.raises(ValueError):
        kernels.repack(random_weights("Q4_K", 16, 256, rng)[:, :-1], "Q4_K", 256)  # rows shorter than 256 elements
    assert not kernels.packs("Q4_0", 17)
    assert not kernels.packs("Q5_K", 16)


def _need_packed(isa, type_name):
    if not kernels.packs(type_name, 16, isa):
        pytest.skip(f"{type_name} has no packed gemm on {isa}")


# Blocks per row: one, a few, and past several of the gemm's chunks of 512 elements with a tail.
@pytest.mark.parametrize("type_name,blocks", [(t, b) for t in TYPES for b in ((1, 3, 9) if t in PIECES else (1, 3, 65))])
def test_packed_gemm_matches_unpacked(isa, type_name, blocks, rng):
    _need_packed(isa, type_name)
    rows, n, cols = 48, 60, _cols(type_name, blocks)
    w = random_weights(type_name, rows, cols, rng)
    x = rng.standard_normal((n, cols), dtype=np.float32)
    x[3, :tensor_type(type_name).block_size] = 0.0  # an all-zero activation block has d = 0 and adds nothing
    packed = kernels.repack(w, type_name, cols)
    w_deq = gguf_dequantize(w, GGMLQuantizationType[type_name]).reshape(rows, cols)
    ref, mag = matmul_ref(w_deq, x, ACT_OF[type_name])
    for nc in (1, 3, 8, 9, 20, 60):   # AVX-512: passes of 8 tokens up to 48, panels beyond
        y = kernels.matmul(packed, type_name, x[:nc], isa=isa, packed=True, n_threads=2)
        unpacked = kernels.matmul(w, type_name, x[:nc], isa="scalar")
        assert np.all(np.abs(y - unpacked) <= 1e-5 * mag[:nc] + 1e-6), (nc, np.max(np.abs(y - unpacked)))
        assert np.all(np.abs(y - ref[:nc]) <= 1e-5 * mag[:nc] + 1e-6), (nc, np.max(np.abs(y - ref[:nc])))
        # The same operations in the same order as the unpacked gemm: a model computes the same bits.
        assert np.array_equal(y, kernels.matmul(w, type_name, x[:nc], isa=isa)), nc


@pytest.mark.parametrize("type_name", TYPES)
def test_packed_row_has_the_same_bits_in_any_batch(isa, type_name, rng):
    _need_packed(isa, type_name)
    cols = 320 if type_name not in PIECES else 768
    w = random_weights(type_name, 64, cols, rng)
    x = rng.standard_normal((60, cols), dtype=np.float32)
    packed = kernels.repack(w, type_name, cols)
    y = kernels.matmul(packed, type_name, x, isa=isa, packed=True)   # AVX-512: in panels
    for t in range(60):
        assert np.array_equal(y[t], kernels.matmul(packed, type_name, x[t:t + 1], isa=isa, packed=True)[0])
    for a, b in [(5, 9), (0, 13), (7, 23)]:   # passes of 8 tokens
        assert np.array_equal(y[a:b], kernels.matmul(packed, type_name, x[a:b], isa=isa, packed=True)), (a, b)


def test_packed_matmul_refuses_what_it_cannot_run(rng):
    w = random_weights("Q4_0", 16, 64, rng)
    x = rng.standard_normal((1, 64), dtype=np.float32)
    with pytest.raises(ValueError):
        kernels.matmul(w, "Q4_0", x, isa="scalar", packed=True)  # scalar has no packed gemm


@pytest.mark.parametrize("type_name", TYPES)
def test_packed_row_dequantizes_as_gguf(isa, type_name, rng):
    # A packed tied embedding looks its tokens up here: the values must be the file row's.
    cols = _cols(type_name, 3)
    w = random_weights(type_name, 48, cols, rng)
    packed = kernels.repack(w, type_name, cols)
    want = gguf_dequantize(w, GGMLQuantizationType[type_name]).reshape(48, cols)
    for row in (0, 5, 15, 16, 31, 47):
        assert np.array_equal(kernels.dequantize_packed_row(packed, type_name, cols, row, isa=isa), want[row]), row
    with pytest.raises(ValueError):
        kernels.dequantize_packed_row(packed, type_name, cols, 48, isa=isa)
