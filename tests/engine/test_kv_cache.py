"""KV cache slots: reservation, truncation, prefix copies, and a full context that refuses."""
import numpy as np
import pytest

from tensorsharp.engine.batch import Stepper
from tensorsharp.engine.kv_cache import KVCache
from tensorsharp.errors import ContextFullError
from tensorsharp.llm import Model


@pytest.fixture(scope="module")
def smol():
    return Model("smollm2-135m", n_ctx=64)


def test_reserve_truncate_and_full(smol):
    cache = KVCache(smol.transformer, n_ctx=8, n_seq=2)
    assert cache.reserve(1, 5) == 0
    assert cache.reserve(1, 3) == 5
    with pytest.raises(ContextFullError):
        cache.reserve(1, 1)
    cache.truncate(1, 2)
    assert cache.reserve(1, 1) == 2
    with pytest.raises(ValueError):
        cache.truncate(1, 7)


def test_copied_prefix_continues_like_the_original(smol):
    cache = KVCache(smol.transformer, n_ctx=32, n_seq=2)
    step = Stepper(smol.transformer, cache, n_batch=32)
    prompt = smol.tokenize("The quick brown fox jumps over")
    n = len(prompt)
    step.step(prompt, np.arange(n), np.zeros(n), [])
    cache.length[0] = n
    cache.copy_prefix(0, 1, n - 2)
    # In one batch, slot 1 re-evaluates the last two tokens on top of the copied prefix while
    # slot 0 re-evaluates its last one: both then predict the token after the whole prompt.
    a = step.step(prompt[-2:] + [prompt[-1]], [n - 2, n - 1, n - 1], [1, 1, 0], [1, 2])
    assert np.allclose(a[0], a[1], atol=1e-4 * np.abs(a[0]).max())


def test_q8_0_cache_takes_34_bytes_per_64_and_refuses_other_types(smol):
    f16 = KVCache(smol.transformer, n_ctx=32, n_seq=2)
    q8 = KVCache(smol.transformer, n_ctx=32, n_seq=2, cache_type="q8_0")
    assert q8.nbytes * 32 == f16.nbytes * 17
    for bad in ("q4_0", "f32", "Q8_0"):
        with pytest.raises(ValueError):
            KVCache(smol.transformer, n_ctx=32, cache_type=bad)


def test_q8_0_cache_holds_the_rows_an_f16_cache_holds_quantized(smol):
    """The same prompt through both caches: every K and V row of the first layer (the later ones
    see attention over different caches) in the q8_0 cache dequantizes to the f16 cache's row
    within half a quantization step (plus the f16 roundings), at every head and position."""
    from gguf import GGMLQuantizationType, quants
    prompt = smol.tokenize("The quick brown fox jumps over the lazy dog, and then it runs away")
    n = len(prompt)
    caches = []
    for cache_type in ("f16", "q8_0"):
        cache = KVCache(smol.transformer, n_ctx=32, n_seq=1, cache_type=cache_type)
        Stepper(smol.transformer, cache, n_batch=32).step(prompt, np.arange(n), np.zeros(n), [])
        caches.append(cache)
    f16, q8 = caches
    hd = smol.transformer.hparams.head_dim
    for a, b in ((f16.k, q8.k), (f16.v, q8.v)):
        want = a[:, 0, :, :n, :].view(np.float16).astype(np.float32)
        rows = b[:, 0, :, :n, :]
        got = quants.dequantize(rows.reshape(-1, rows.shape[-1]), GGMLQuantizationType.Q8_0).reshape(want.shape)
        step = np.abs(want).reshape(*want.shape[:-1], hd // 32, 32).max(-1, keepdims=True) / 127
        bound = (0.52 * step + 2 ** -10 * np.abs(want).reshape(step.shape[:-1] + (32,))).reshape(want.shape)
        assert np.all(np.abs(got - want) <= bound + 1e-6)
        assert np.any(got != want)   # it is quantized, not a copy


def test_q8_0_cache_scores_close_to_f16_and_a_row_alone_as_in_a_batch(smol):
    """Against the f16 cache, next-token distributions stay close (llama.cpp's own q8_0 cache
    measured KL 0.0036 on this model); and two sequences in one step score as each alone."""
    prompt = smol.tokenize("The history of the city of Rome begins with a small settlement on the Tiber")
    n = len(prompt)
    logits = {}
    for cache_type in ("f16", "q8_0"):
        cache = KVCache(smol.transformer, n_ctx=64, n_seq=2, cache_type=cache_type)
        step = Stepper(smol.transformer, cache, n_batch=64)
        logits[cache_type] = step.step(prompt, np.arange(n), np.zeros(n), np.arange(n)).copy()
    p, q = (x - x.max(-1, keepdims=True) for x in (logits["f16"], logits["q8_0"]))
    p, q = (x - np.log(np.exp(x).sum(-1, keepdims=True)) for x in (p, q))
    kl = (np.exp(p) * (p - q)).sum(-1)
    assert kl.mean() < 0.01 and kl.max() < 0.05
    assert (p.argmax(-1) == q.argmax(-1)).mean() >= 0.8
    # slot 1 takes a shorter prompt; then a step of both slots against each alone
    step.step(prompt[:9], np.arange(9), np.ones(9), [])
    both = step.step([prompt[-1], prompt[8]], [n, 9], [0, 1], [0, 1]).copy()
    alone0 = step.step([prompt[-1]], [n], [0], [0]).copy()
    alone1 = step.step([prompt[8]], [9], [1], [0]).copy()
    assert np.array_equal(both[0], alone0[0]) and np.array_equal(both[1], alone1[0])
