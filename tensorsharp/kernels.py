"""Checked, allocating wrappers around the C kernels (tensorsharp._kernels)."""
from __future__ import annotations

import mmap
import threading

import numpy as np

from tensorsharp import _kernels
from tensorsharp.gguf.types import tensor_type

# Activation formats of the quantized dot products (ts_act in csrc/include/ts/types.h).
ACT_F32, ACT_Q8X32, ACT_Q8K = 0, 1, 2
ACT_BLOCK = {ACT_Q8X32: (32, 40), ACT_Q8K: (256, 292)}  # elements, bytes per block

SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                   "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS",
                   "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "MXFP4")


def isa() -> str:
    """The kernel level in use (TENSORSHARP_ISA forces one)."""
    return _kernels.isa()


def available_isas() -> list[str]:
    """Levels this CPU and build can run, best last."""
    return _kernels.available()


def rows_exact(type_ids, isa: str | None = None) -> bool:
    """Whether matrix products over weights of these types give a row the same bits alone as in
    any batch (a batch of one included)."""
    return all(_kernels.row_exact(int(t), isa) for t in type_ids)


def _type_id(type_name: str) -> int:
    t = tensor_type(type_name)
    if _kernels.type_traits(t.id) is None:
        raise NotImplementedError(f"tensor type {type_name} has no kernels")
    return t.id


def dequantize(raw: np.ndarray, type_name: str, n: int, isa: str | None = None) -> np.ndarray:
    """n elements of `type_name` blocks in `raw` (uint8) -> float32 (n,)."""
    tid = _type_id(type_name)
    need = tensor_type(type_name).row_bytes(n)
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if raw.size < need:
        raise ValueError(f"{type_name}: {n} elements need {need} bytes, got {raw.size}")
    out = np.empty(n, dtype=np.float32)
    if n:
        _kernels.dequantize(raw, tid, n, out, isa)
    return out


def quantize_activations(x: np.ndarray, act: int, isa: str | None = None) -> np.ndarray:
    """One row of floats -> bytes of the q8x32 or q8k activation format."""
    elems, nbytes = ACT_BLOCK[act]
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if x.size % elems:
        raise ValueError(f"{x.size} is not a multiple of {elems}")
    out = np.empty(x.size // elems * nbytes, dtype=np.uint8)
    _kernels.quantize_act(x, act, out, isa)
    return out


def quantize_cache_row(x: np.ndarray, type_name: str) -> np.ndarray:
    """Floats (a multiple of 32) -> GGML Q8_0 or Q4_0 blocks, as the KV cache stores its rows."""
    t = tensor_type(type_name)
    if type_name not in ("Q8_0", "Q4_0"):
        raise ValueError(f"a KV cache row is Q8_0 or Q4_0, not {type_name}")
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if x.size % 32:
        raise ValueError(f"{x.size} is not a multiple of 32")
    out = np.empty(t.row_bytes(x.size), dtype=np.uint8)
    if x.size:
        _kernels.quantize_cache_row(x, t.id, out)
    return out


def cache_row_bytes(cache_type: str, head_dim: int) -> int:
    """Bytes of a position's head_dim values in a KV cache of cache_type (f16, q8_0, q4_0); 0 where
    that type cannot hold such heads."""
    return _kernels.cache_row_bytes(tensor_type(cache_type.upper()).id, head_dim)


def packs(type_name: str, rows: int, isa: str | None = None) -> bool:
    """Whether a (rows, ...) weight of this type is worth repacking for the table in use: its
    gemm_packed exists and the rows fill whole groups."""
    t = tensor_type(type_name)
    return _kernels.type_traits(t.id) is not None and _kernels.packs(t.id, isa) and rows % _kernels.pack_rows() == 0


# Where a packed matrix starts: on a cache line, so that its groups' 64-byte registers load whole
# lines (large numpy arrays start 16 bytes past one; a packed Q4_K matrix then took ~10% longer).
PACK_ALIGN = 64


def empty_packed(shape: tuple[int, int]) -> np.ndarray:
    """Uninitialised uint8 (rows, row_bytes) for a packed matrix, starting on a PACK_ALIGN boundary."""
    n = shape[0] * shape[1]
    buf = np.empty(n + PACK_ALIGN, dtype=np.uint8)
    start = -buf.ctypes.data % PACK_ALIGN
    return buf[start:start + n].reshape(shape)


HUGE_PAGE = 2 << 20


def _huge_page_buffer(n: int) -> np.ndarray:
    """n uninitialised (zero) bytes starting on a 2 MB boundary, in a private anonymous mapping
    that Linux is asked to back with transparent huge pages; plain numpy memory where the
    platform has no such advice."""
    if not hasattr(mmap, "MADV_HUGEPAGE") or not hasattr(mmap, "MAP_PRIVATE"):
        return empty_packed((1, n))[0]
    # Private: a shared anonymous mapping is shmem, which THP's madvise mode leaves alone.
    m = mmap.mmap(-1, n + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_HUGEPAGE)
    buf = np.frombuffer(m, dtype=np.uint8)  # holds the mapping until the last view goes
    start = -buf.ctypes.data % HUGE_PAGE
    return buf[start:start + n]


class WeightArena:
    """A model's weight matrices, carved one after another from large huge-page mappings.

    Decode streams every weight once per step. With 4 KB pages (the file's mmap, or numpy's
    memory) each 4 KB of a weight costs a TLB miss, and under a hypervisor a miss walks two page
    tables. 2 MB pages took 20-35% off a one-sequence decode step (SmolLM2, Gemma 3, Qwen2.5, one
    thread's CPU time, packed or not) and 10-20% off a step of 8. One arena per model load,
    not one mapping per matrix: a matrix much smaller than 2 MB would otherwise hold a whole
    huge page. Memory goes back when the last matrix of a mapping is freed."""

    CHUNK = 64 << 20

    def __init__(self):
        self._buf: np.ndarray | None = None
        self._used = 0

    def empty(self, shape: tuple[int, int]) -> np.ndarray:
        """As empty_packed (a PACK_ALIGN start), from the arena."""
        n = shape[0] * shape[1]
        if self._buf is None or self._used + n > self._buf.size:
            self._buf, self._used = _huge_page_buffer(max(self.CHUNK, n)), 0
        out = self._buf[self._used:self._used + n].reshape(shape)
        self._used += -(-n // PACK_ALIGN) * PACK_ALIGN
        return out


def repack(w_raw: np.ndarray, type_name: str, cols: int, out: np.ndarray | None = None) -> np.ndarray:
    """A copy of W (rows, row_bytes) uint8 in the packed layout of csrc/include/ts/repack.h:
    rows in groups of 16, each block's 16 copies side by side. Same shape and size; written into
    out (C-contiguous, W's shape) when given, else into empty_packed's."""
    w_raw = np.ascontiguousarray(w_raw, dtype=np.uint8)
    if out is None:
        out = empty_packed(w_raw.shape)
    elif out.shape != w_raw.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"repack: out must be C-contiguous uint8 {w_raw.shape}")
    _kernels.repack(w_raw, _type_id(type_name), cols, out)
    return out


def dequantize_packed_row(packed: np.ndarray, type_name: str, cols: int, row: int,
                          isa: str | None = None) -> np.ndarray:
    """Row `row` of a repack()ed matrix (rows, row_bytes) uint8 as float32 (cols,): the values the
    unpacked row dequantizes to."""
    out = np.empty(cols, dtype=np.float32)
    _kernels.dequantize_packed_row(np.ascontiguousarray(packed, dtype=np.uint8), _type_id(type_name), cols, row,
                                   out, isa)
    return out


def matmul(w_raw: np.ndarray, type_name: str, x: np.ndarray, n_threads: int = 0,
           isa: str | None = None, packed: bool = False) -> np.ndarray:
    """y (n, rows) = x (n, cols) @ W.T with W (rows, row_bytes) uint8 kept in its GGUF blocks
    (packed: in repack()'s layout)."""
    tid = _type_id(type_name)
    w_raw = np.ascontiguousarray(w_raw, dtype=np.uint8)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if w_raw.ndim != 2 or x.ndim != 2:
        raise ValueError("matmul wants w_raw (rows, row_bytes) and x (n, cols)")
    cols = x.shape[1]
    need = tensor_type(type_name).row_bytes(cols)
    if w_raw.shape[1] != need:
        raise ValueError(f"{type_name} rows of {cols} elements are {need} bytes, w_raw rows are {w_raw.shape[1]}")
    y = np.empty((x.shape[0], w_raw.shape[0]), dtype=np.float32)
    if y.size:
        _kernels.matmul(w_raw, tid, cols, x, y, n_threads, isa, packed)
    return y


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def rmsnorm(x: np.ndarray, w: np.ndarray | None, eps: float, isa: str | None = None) -> np.ndarray:
    x = _f32(x).reshape(-1)
    if w is not None:
        w = _f32(w).reshape(-1)
        if w.size != x.size:
            raise ValueError("rmsnorm weight size differs from x")
    y = np.empty_like(x)
    _kernels.rmsnorm(x, w, y, eps, isa)
    return y


def softmax(x: np.ndarray, isa: str | None = None) -> np.ndarray:
    y = _f32(x).reshape(-1).copy()
    _kernels.softmax(y, isa)
    return y


def silu(x: np.ndarray, isa: str | None = None) -> np.ndarray:
    x = _f32(x).reshape(-1)
    y = np.empty_like(x)
    _kernels.unary("silu", x, y, isa)
    return y


def gelu(x: np.ndarray, isa: str | None = None) -> np.ndarray:
    x = _f32(x).reshape(-1)
    y = np.empty_like(x)
    _kernels.unary("gelu", x, y, isa)
    return y


def _gated(op: str, g: np.ndarray, u: np.ndarray, isa: str | None) -> np.ndarray:
    g, u = _f32(g).reshape(-1), _f32(u).reshape(-1)
    if g.size != u.size:
        raise ValueError(f"{op}: gate and up sizes differ")
    y = np.empty_like(g)
    _kernels.gated(op, g, u, y, isa)
    return y


def swiglu(g: np.ndarray, u: np.ndarray, isa: str | None = None) -> np.ndarray:
    return _gated("swiglu", g, u, isa)


def geglu(g: np.ndarray, u: np.ndarray, isa: str | None = None) -> np.ndarray:
    return _gated("geglu", g, u, isa)


def rope(x: np.ndarray, pos: float, n_rot: int, freq_base: float = 10000.0, freq_scale: float = 1.0,
         neox: bool = False, freq_factors: np.ndarray | None = None, mscale: float = 1.0,
         isa: str | None = None) -> np.ndarray:
    """Rotate x (n_head, head_dim) for one position; returns a new array. freq_factors (n_rot/2)
    divide each pair's frequency; mscale multiplies cos and sin."""
    y = _f32(x).copy()
    if y.ndim != 2 or n_rot % 2 or not 0 < n_rot <= y.shape[1]:
        raise ValueError("rope wants x (n_head, head_dim) and an even n_rot <= head_dim")
    if freq_factors is not None:
        freq_factors = _f32(freq_factors)
        if freq_factors.shape != (n_rot // 2,):
            raise ValueError("rope wants n_rot/2 frequency factors")
    _kernels.rope(y, n_rot, pos, freq_base, freq_scale, neox, freq_factors, mscale, isa)
    return y


def f16_to_f32(x: np.ndarray, isa: str | None = None) -> np.ndarray:
    x = np.ascontiguousarray(x).view(np.uint16).reshape(-1)
    y = np.empty(x.size, dtype=np.float32)
    if x.size:
        _kernels.f16_to_f32(x, y, isa)
    return y


def f32_to_f16(x: np.ndarray, isa: str | None = None) -> np.ndarray:
    x = _f32(x).reshape(-1)
    y = np.empty(x.size, dtype=np.uint16)
    if x.size:
        _kernels.f32_to_f16(x, y, isa)
    return y.view(np.float16)


def attention(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, q_pos: np.ndarray,
              scale: float | None = None, window: int = 0, softcap: float = 0.0,
              n_threads: int = 0, isa: str | None = None, sinks: np.ndarray | None = None) -> np.ndarray:
    """Causal grouped-query attention of one sequence.

    q (n_tok, n_head, head_dim) f32; k_cache, v_cache (n_kv_head, n_ctx, head_dim) f16, or
    (n_kv_head, n_ctx, head_dim // 32 * 34 or * 18) uint8 holding Q8_0 or Q4_0 blocks (the
    quantized caches, told apart by their rows' length);
    q_pos (n_tok) int: a query at p sees cache positions [p - window + 1, p] (window 0: all);
    sinks (n_head) or None: a logit per head that joins each softmax's denominator.
    """
    q = _f32(q)
    quantized = np.asarray(k_cache).dtype == np.uint8
    dtype = np.uint8 if quantized else np.float16
    k_cache = np.ascontiguousarray(k_cache, dtype=dtype)
    v_cache = np.ascontiguousarray(v_cache, dtype=dtype)
    q_pos = np.asarray(q_pos).reshape(-1)
    if q.ndim != 3 or k_cache.ndim != 3 or k_cache.shape != v_cache.shape:
        raise ValueError("attention wants q (n_tok, n_head, head_dim) and k/v (n_kv_head, n_ctx, row)")
    cache_type = "F16"
    if quantized:
        cache_type = "Q4_0" if k_cache.shape[2] == cache_row_bytes("Q4_0", q.shape[2]) else "Q8_0"
    row = q.shape[2] if cache_type == "F16" else cache_row_bytes(cache_type, q.shape[2])
    if k_cache.shape[2] != row or q.shape[1] % k_cache.shape[0] or q_pos.size != q.shape[0]:
        raise ValueError("attention: head counts, head_dim or positions do not match")
    # Checked before narrowing to int32, which would wrap large positions silently.
    if q_pos.size and (q_pos.min() < 0 or q_pos.max() >= k_cache.shape[1]):
        raise ValueError("attention: query positions must lie inside the cache")
    q_pos = q_pos.astype(np.int32)
    if scale is None:
        scale = 1.0 / float(np.sqrt(q.shape[2]))
    out = np.empty_like(q)
    _kernels.attention(q, k_cache.view(np.uint8), v_cache.view(np.uint8), _type_id(cache_type), q_pos,
                       window, scale, softcap, out, n_threads, isa, None if sinks is None else _f32(sinks))
    return out


def _check_bitmask(bitmask: np.ndarray, n_vocab: int) -> np.ndarray:
    if not (isinstance(bitmask, np.ndarray) and bitmask.dtype == np.uint32 and bitmask.ndim == 1):
        raise ValueError("a token mask is a uint32 bitmask (ceil(n_vocab/32),)")
    if bitmask.size != (n_vocab + 31) // 32:
        raise ValueError(f"a bitmask for {n_vocab} tokens has {(n_vocab + 31) // 32} words, not {bitmask.size}")
    return np.ascontiguousarray(bitmask)


def logits_prepare(logits: np.ndarray, bitmask: np.ndarray | None = None, isa: str | None = None
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """Sampling's first pass: logits (n_vocab,) with -inf where bitmask (ceil(n_vocab/32),) uint32
    has a clear bit (token i is bit i % 32 of word i // 32) or the logit is not finite; the maxima
    of its blocks of 64; how many stay finite."""
    logits = _logits_row(logits)
    if bitmask is not None:
        bitmask = _check_bitmask(bitmask, logits.size)
    out = np.empty_like(logits)
    bm = np.empty((logits.size + 63) // 64, np.float32)
    finite = _kernels.logits_prepare(logits, bitmask, out, bm, isa)
    return out, bm, finite


def exp_sum(x: np.ndarray, sub: float, scale: float, lo: float, isa: str | None = None) -> tuple[float, np.ndarray]:
    """The sum over x >= lo of exp((x - sub) * scale) (float terms, double sum) and the terms."""
    x = _logits_row(x)
    out = np.empty_like(x)
    return _kernels.exp_sum(x, sub, scale, lo, out, isa), out


_scratch = threading.local()   # SampleWork per vocabulary size, per thread: ts_sample writes into it


def _sample_works(n_vocab: int, count: int) -> list[_kernels.SampleWork]:
    """count scratch areas for n_vocab tokens, kept for this thread's later calls."""
    works = getattr(_scratch, "works", None)
    if works is None:
        works = _scratch.works = {}
    have = works.get(n_vocab)
    if have is None:
        if len(works) >= 4:   # a process serving one model sees one size; tests see many
            works.clear()
        have = works[n_vocab] = []
    while len(have) < count:
        have.append(_kernels.SampleWork(
            np.empty(n_vocab, np.float32), np.empty(n_vocab, np.float32), np.empty(12 * n_vocab, np.uint8),
            np.zeros(n_vocab, np.int32), np.empty((n_vocab + 63) // 64, np.float32)))
    return have[:count]


def _sample_work(n_vocab: int) -> _kernels.SampleWork:
    return _sample_works(n_vocab, 1)[0]


def _logits_row(logits: np.ndarray) -> np.ndarray:
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    if logits.ndim != 1 or logits.size == 0:
        raise ValueError("sampling wants one non-empty row of logits (n_vocab,)")
    return logits


_NO_IDS = np.zeros(0, np.int32)
_NO_BIAS = np.zeros(0, np.float32)


def sample_token(logits: np.ndarray, u: float, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                 min_p: float = 0.0, repeat_penalty: float = 1.0, presence_penalty: float = 0.0,
                 frequency_penalty: float = 0.0, bias_ids: np.ndarray | None = None,
                 bias: np.ndarray | None = None, recent: np.ndarray | None = None,
                 bitmask: np.ndarray | None = None, isa: str | None = None) -> int:
    """One token from logits (n_vocab,) by ts_sample (see csrc/include/ts/sampling.h): bias_ids (m,)
    int32 and bias (m,) float32 add a logit bias; recent (window,) int32 are the tokens the penalties
    count; bitmask (ceil(n_vocab/32),) uint32 allows bit i % 32 of word i // 32; u in [0, 1)."""
    row = _sample_row(logits, u, temperature, top_k, top_p, min_p, repeat_penalty, presence_penalty,
                      frequency_penalty, bias_ids, bias, recent, bitmask)
    return _kernels.sample(row, _sample_work(row[0].size), isa)


def _sample_row(logits, u, temperature, top_k, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty,
                bias_ids, bias, recent, bitmask) -> tuple:
    """sample_token's arguments as the C wrapper takes a row (_kernels.sample, sample_rows):
    contiguous arrays of its types, top_k within int32, u last."""
    logits = _logits_row(logits)
    if bitmask is not None:
        bitmask = _check_bitmask(bitmask, logits.size)
    return (logits, temperature, min(max(int(top_k), 0), 2 ** 31 - 1), top_p, min_p, repeat_penalty,
            presence_penalty, frequency_penalty,
            _NO_IDS if bias_ids is None else np.ascontiguousarray(bias_ids, dtype=np.int32),
            _NO_BIAS if bias is None else np.ascontiguousarray(bias, dtype=np.float32),
            _NO_IDS if recent is None else np.ascontiguousarray(recent, dtype=np.int32), bitmask, u)


def sample_tokens(rows: list[tuple], n_threads: int = 0, isa: str | None = None) -> list[int | None]:
    """sample_token on each row, a tuple of its arguments from logits to bitmask (all rows of one
    vocabulary size), the rows spread over the pool's threads (n_threads, 0: all). A row's token
    is the one sample_token gives it; None where its logit-bias or recent ids are outside the
    vocabulary (where sample_token raises)."""
    if not rows:
        return []
    args = [_sample_row(*row) for row in rows]
    if any(a[0].size != args[0][0].size for a in args):
        raise ValueError("sample_tokens wants rows of one vocabulary size")
    threads = min(len(rows), n_threads if n_threads > 0 else _kernels.cpu_count())
    tokens = _kernels.sample_rows(args, _sample_works(args[0][0].size, threads), n_threads, isa)
    return [t if t >= 0 else None for t in tokens]


def logprobs(logits: np.ndarray, token: int, n_top: int, isa: str | None = None
             ) -> tuple[float, list[tuple[int, float]]]:
    """Log-softmax of logits (n_vocab,) at token, and the n_top best (token, logprob), best first
    (ties: lower id first)."""
    logits = _logits_row(logits)
    top_id = np.empty(max(n_top, 0), np.int32)
    top_lp = np.empty(max(n_top, 0), np.float64)
    lp, m = _kernels.logprobs(logits, token, top_id, top_lp, _sample_work(logits.size), isa)
    return lp, list(zip(top_id[:m].tolist(), top_lp[:m].tolist()))
