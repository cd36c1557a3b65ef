"""Grouped-query causal attention over an f16 KV cache on every ISA against float64 numpy."""
import numpy as np
import pytest

from tensorsharp import kernels

# Absolute error allowed, relative to max|v|: the output is a convex combination of v rows,
# and float32 scores and an online softmax leave it within a few 1e-7 of the exact result.
ATTN_TOL = 2e-6


def attention_ref(q, k, v, q_pos, scale, window=0, softcap=0.0, sinks=None):
    """q (n_tok, n_head, hd); k, v (n_kv_head, n_ctx, hd) -> (n_tok, n_head, hd) float64; sinks
    (n_head): a logit per head in each softmax that weighs no value row (GPT-OSS)."""
    n_tok, n_head, hd = q.shape
    group = n_head // k.shape[0]
    kd, vd = k.astype(np.float64), v.astype(np.float64)
    out = np.zeros(q.shape, np.float64)
    for t in range(n_tok):
        p = int(q_pos[t])
        p0 = max(0, p - window + 1) if window > 0 else 0
        for h in range(n_head):
            s = scale * (kd[h // group, p0:p + 1] @ q[t, h].astype(np.float64))
            if softcap > 0:
                s = softcap * np.tanh(s / softcap)
            top = s.max() if sinks is None else max(s.max(), float(sinks[h]))
            w = np.exp(s - top)
            total = w.sum() + (0.0 if sinks is None else np.exp(float(sinks[h]) - top))
            out[t, h] = (w / total) @ vd[h // group, p0:p + 1]
    return out


def _cache(rng, n_kv_head, n_ctx, hd, spread=1.0):
    k = (rng.standard_normal((n_kv_head, n_ctx, hd)) * spread).astype(np.float16)
    v = rng.standard_normal((n_kv_head, n_ctx, hd)).astype(np.float16)
    return k, v


def _check(out, ref, v):
    bound = ATTN_TOL * float(np.max(np.abs(v.astype(np.float32))))
    err = float(np.max(np.abs(out - ref)))
    assert err <= bound, f"max error {err} > {bound}"


# (n_head, n_kv_head, head_dim): SmolLM2 (9/3, 64), 4 heads on one KV head at Gemma 3's 256,
# and 36 so that head_dim leaves tails of 4 after both 8- and 16-wide vectors.
HEADS = [(9, 3, 64), (4, 1, 256), (2, 2, 36)]


@pytest.mark.parametrize("heads", HEADS)
@pytest.mark.parametrize("window,softcap", [(0, 0.0), (37, 0.0), (0, 3.0), (20, 5.0)])
def test_prefill_chunk_mid_sequence(isa, heads, window, softcap, rng):
    n_head, n_kv_head, hd = heads
    n_ctx = 160
    k, v = _cache(rng, n_kv_head, n_ctx, hd, spread=2.0)
    # A chunk of 11 queries at positions 90..100: earlier positions already sit in the cache.
    q_pos = np.arange(90, 101, dtype=np.int32)
    q = rng.standard_normal((q_pos.size, n_head, hd)).astype(np.float32)
    scale = 1.0 / np.sqrt(hd)
    out = kernels.attention(q, k, v, q_pos, scale, window, softcap, isa=isa)
    _check(out, attention_ref(q, k, v, q_pos, scale, window, softcap), v)


@pytest.mark.parametrize("heads", HEADS)
def test_decode_positions_across_block_edges(isa, heads, rng):
    # Key counts 1..40 cover empty tails and every partial block of 8 and 16.
    n_head, n_kv_head, hd = heads
    k, v = _cache(rng, n_kv_head, 64, hd)
    q_pos = np.array([0, 1, 6, 7, 8, 15, 16, 17, 31, 33, 39], np.int32)
    q = rng.standard_normal((q_pos.size, n_head, hd)).astype(np.float32)
    out = kernels.attention(q, k, v, q_pos, isa=isa)
    _check(out, attention_ref(q, k, v, q_pos, 1.0 / np.sqrt(hd)), v)


def test_position_zero_returns_first_value_row(isa, rng):
    k, v = _cache(rng, 1, 8, 64)
    q = rng.standard_normal((1, 2, 64)).astype(np.float32)
    out = kernels.attention(q, k, v, np.array([0], np.int32), isa=isa)
    assert np.allclose(out[0], v[0, 0].astype(np.float32), rtol=0, atol=1e-6)


@pytest.mark.parametrize("order", ["rising", "falling"])
def test_running_max_rescaling(isa, order, rng):
    # Scores that rise with position make the running max grow in every block (each block
    # rescales what came before); falling scores fix it in the first block.
    hd, n_ctx = 64, 300
    q = np.ones((1, 1, hd), np.float32)
    ramp = np.linspace(-6.0, 6.0, n_ctx) if order == "rising" else np.linspace(6.0, -6.0, n_ctx)
    k = (np.broadcast_to(ramp[:, None], (n_ctx, hd)) / 8 + 0.01 * rng.standard_normal((n_ctx, hd)))
    k = k[None].astype(np.float16)
    v = rng.standard_normal((1, n_ctx, hd)).astype(np.float16)
    q_pos = np.array([n_ctx - 1], np.int32)
    out = kernels.attention(q, k, v, q_pos, 1.0, isa=isa)
    _check(out, attention_ref(q, k, v, q_pos, 1.0), v)


def test_matches_scalar_on_long_context(isa, rng):
    k, v = _cache(rng, 3, 2100, 64)
    q_pos = np.array([2047, 2099], np.int32)
    q = rng.standard_normal((2, 9, 64)).astype(np.float32)
    out = kernels.attention(q, k, v, q_pos, isa=isa)
    _check(out, kernels.attention(q, k, v, q_pos, isa="scalar"), v)
    _check(out, attention_ref(q, k, v, q_pos, 0.125), v)


@pytest.mark.parametrize("heads", [(9, 3, 64), (4, 1, 256)])
def test_one_and_two_threads_agree(isa, heads, rng):
    n_head, n_kv_head, hd = heads
    k, v = _cache(rng, n_kv_head, 200, hd)
    q_pos = np.arange(150, 157, dtype=np.int32)
    q = rng.standard_normal((q_pos.size, n_head, hd)).astype(np.float32)
    one = kernels.attention(q, k, v, q_pos, window=64, n_threads=1, isa=isa)
    two = kernels.attention(q, k, v, q_pos, window=64, n_threads=2, isa=isa)
    assert np.array_equal(one, two)


def test_bad_shapes_raise(rng):
    k, v = _cache(rng, 3, 16, 64)
    q = rng.standard_normal((2, 9, 64)).astype(np.float32)
    pos = np.array([3, 4], np.int32)
    kernels.attention(q, k, v, pos)  # the well-formed call the cases below break
    bad = [
        (q[0], k, v, pos),                                   # q not 3-d
        (q, k[0], v[0], pos),                                # cache not 3-d
        (q, k, v[:, :8], pos),                               # k and v differ
        (q[:, :, :32], k, v, pos),                           # head_dim differs
        (q[:, :8], k, v, pos),                               # 8 heads over 3 KV heads
        (q, k, v, pos[:1]),                                  # one position for two tokens
        (q, k, v, np.array([3, 16], np.int32)),              # position past the cache
        (q, k, v, np.array([-1, 4], np.int32)),              # negative position
    ]
    for args in bad:
        with pytest.raises(ValueError):
            kernels.attention(*args)


@pytest.mark.parametrize("heads", HEADS)
@pytest.mark.parametrize("window", [0, 37])
@pytest.mark.parametrize("n_tok", [1, 11])
def test_sinks(isa, heads, window, n_tok, rng):
    """A sink per head joins the softmax's denominator: sinks far below, among and far above the
    scores (the last leaves almost nothing of v)."""
    n_head, n_kv_head, hd = heads
    k, v = _cache(rng, n_kv_head, 160, hd, spread=2.0)
    q_pos = np.arange(101 - n_tok, 101, dtype=np.int32)
    q = rng.standard_normal((n_tok, n_head, hd)).astype(np.float32)
    sinks = rng.choice([-30.0, -1.0, 0.5, 2.0, 40.0], size=n_head).astype(np.float32)
    scale = 1.0 / np.sqrt(hd)
    out = kernels.attention(q, k, v, q_pos, scale, window, sinks=sinks, isa=isa)
    ref = attention_ref(q, k, v, q_pos, scale, window, sinks=sinks)
    _check(out, ref, v)
    plain = attention_ref(q, k, v, q_pos, scale, window)
    assert np.max(np.abs(ref - plain)) > 100 * ATTN_TOL  # the sinks change the result


# ---- the quantized caches: GGML Q8_0 / Q4_0 rows, checked against gguf-py's quantizers and dequantizers ----

CACHE_TYPES = ["Q8_0", "Q4_0"]


def _quantized_cache(rng, cache_type, n_kv_head, n_ctx, hd, spread=1.0):
    """(k, v) as rows of cache_type (n_kv_head, n_ctx, row bytes) made by gguf-py, and their values."""
    from gguf import GGMLQuantizationType, quants
    t = GGMLQuantizationType[cache_type]
    rows = []
    for x in (rng.standard_normal((n_kv_head * n_ctx, hd)) * spread, rng.standard_normal((n_kv_head * n_ctx, hd))):
        q = quants.quantize(x.astype(np.float32), t)
        rows.append((q.reshape(n_kv_head, n_ctx, -1), quants.dequantize(q, t).reshape(n_kv_head, n_ctx, hd)))
    (kq, kd), (vq, vd) = rows
    return kq, vq, kd, vd


def _q8_round_trip(q):
    """Query rows as attention over a quantized cache takes them: quantized to Q8_0 first, as llama.cpp does."""
    from gguf import GGMLQuantizationType, quants
    rows = q.reshape(-1, q.shape[-1]).astype(np.float32)
    return quants.dequantize(quants.quantize(rows, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0).reshape(q.shape)


@pytest.mark.parametrize("cache_type", CACHE_TYPES)
def test_cache_rows_are_ggmls(cache_type, rng):
    """The cache's quantizers write the bytes gguf-py's do (ggml's layout and rounding): one scalar
    implementation serves every level."""
    from gguf import GGMLQuantizationType, quants
    x = np.concatenate([rng.standard_normal(4096) * 3, np.zeros(32), np.full(32, 1e-30), rng.standard_normal(32) * 1e4,
                        -np.abs(rng.standard_normal(32)), np.abs(rng.standard_normal(32))])
    x = x.astype(np.float32)
    want = quants.quantize(x.reshape(1, -1), GGMLQuantizationType[cache_type]).reshape(-1)
    assert np.array_equal(kernels.quantize_cache_row(x, cache_type), want)


# (n_head, n_kv_head, head_dim): SmolLM2, Qwen2.5's 14 over 2, Gemma 3's 256, and 32 (one block)
QUANT_HEADS = [(9, 3, 64), (14, 2, 64), (4, 1, 256), (2, 2, 32)]


@pytest.mark.parametrize("cache_type", CACHE_TYPES)
@pytest.mark.parametrize("heads", QUANT_HEADS)
@pytest.mark.parametrize("window,softcap", [(0, 0.0), (37, 0.0), (20, 5.0)])
@pytest.mark.parametrize("n_tok", [1, 11])
def test_quantized_cache_equals_attention_over_its_values(isa, cache_type, heads, window, softcap, n_tok, rng):
    """Over a Q8_0 or Q4_0 cache, the result is exact attention of the Q8_0-rounded queries over the
    values the blocks hold: decode (one query) and a prefill chunk, windows and soft-capping, on
    every ISA."""
    n_head, n_kv_head, hd = heads
    kq, vq, kd, vd = _quantized_cache(rng, cache_type, n_kv_head, 160, hd, spread=2.0)
    q_pos = np.arange(101 - n_tok, 101, dtype=np.int32)
    q = rng.standard_normal((n_tok, n_head, hd)).astype(np.float32)
    scale = 1.0 / np.sqrt(hd)
    out = kernels.attention(q, kq, vq, q_pos, scale, window, softcap, isa=isa)
    _check(out, attention_ref(_q8_round_trip(q), kd, vd, q_pos, scale, window, softcap), vd)


@pytest.mark.parametrize("cache_type", CACHE_TYPES)
def test_quantized_cache_long_context_sinks_and_threads(isa, cache_type, rng):
    kq, vq, kd, vd = _quantized_cache(rng, cache_type, 3, 2100, 64)
    q_pos = np.array([2047, 2099], np.int32)
    q = rng.standard_normal((2, 9, 64)).astype(np.float32)
    sinks = np.array([-30.0, -1.0, 0.5, 2.0, 40.0, 0.0, 1.0, -2.0, 3.0], np.float32)
    out = kernels.attention(q, kq, vq, q_pos, sinks=sinks, n_threads=1, isa=isa)
    _check(out, attention_ref(_q8_round_trip(q), kd, vd, q_pos, 0.125, sinks=sinks), vd)
    assert np.array_equal(out, kernels.attention(q, kq, vq, q_pos, sinks=sinks, n_threads=2, isa=isa))


@pytest.mark.parametrize("cache_type", ["F16"] + CACHE_TYPES)
@pytest.mark.parametrize("heads", [(9, 3, 64), (6, 2, 96), (4, 1, 36)])
def test_a_row_alone_has_the_bits_it_has_among_its_group(isa, cache_type, heads, rng):
    """The rows of a K/V head's group (a prefill chunk's tokens x the group's heads) attend together,
    each block of the cache read once for all of them; one query row attends on its own. Each row's
    result has the same bits either way, so a sequence decodes the same alone as in a batch."""
    n_head, n_kv_head, hd = heads
    if cache_type != "F16" and hd % 32:
        pytest.skip("quantized caches hold heads of whole 32-element blocks")
    if cache_type == "F16":
        k, v = _cache(rng, n_kv_head, 90, hd)
    else:
        k, v, _, _ = _quantized_cache(rng, cache_type, n_kv_head, 90, hd)
    q_pos = np.array([40, 41, 42, 88], np.int32)
    q = rng.standard_normal((4, n_head, hd)).astype(np.float32)
    out = kernels.attention(q, k, v, q_pos, isa=isa)
    group = n_head // n_kv_head
    for t in range(4):
        for h in range(n_head):
            g = slice(h // group, h // group + 1)
            alone = kernels.attention(q[t:t + 1, h:h + 1], k[g], v[g], q_pos[t:t + 1], 1.0 / np.sqrt(hd), isa=isa)
            assert np.array_equal(alone[0, 0], out[t, h]), (t, h)


def test_quantized_cache_bad_shapes_raise(rng):
    kq, vq, _, _ = _quantized_cache(rng, "Q8_0", 3, 16, 64)
    q = rng.standard_normal((2, 9, 64)).astype(np.float32)
    pos = np.array([3, 4], np.int32)
    kernels.attention(q, kq, vq, pos)  # the well-formed call the cases below break
    for args in [(q, kq[:, :, :34], vq[:, :, :34], pos),           # rows of one block for head_dim 64
                 (q, kq[:, :, :40], vq[:, :, :40], pos),           # rows of no cache type
                 (q[:, :, :48], kq, vq, pos),                      # head_dim not a multiple of 32
                 (q, kq, vq[:, :8], pos)]:                         # k and v differ
        with pytest.raises(ValueError):
            kernels.attention(*args)
