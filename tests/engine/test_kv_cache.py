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
