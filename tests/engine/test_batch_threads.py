"""The Stepper's steps split over two threads against one: matmul rows and attention items are
claimed from counters that each step must find at zero, whatever the steps before it used."""
import numpy as np
import pytest

from tensorsharp.engine.batch import Stepper
from tensorsharp.engine.kv_cache import KVCache
from tensorsharp.llm import Model


@pytest.fixture(scope="module")
def smol():
    return Model("smollm2-135m", n_ctx=64)


def _run(model, prompt, threads):
    """Logits of steps on one context that use different sets of phases, step k on threads[k]
    threads: a prefill without logits (no output matmul), a decode, three tokens with every row's
    logits, and a decode."""
    step = Stepper(model.transformer, KVCache(model.transformer, 32), n_batch=8)
    n, extra = len(prompt), [11, 22, 33, 44, 55]
    batches = [(prompt, np.arange(n), []), (extra[:1], [n], [0]), (extra[1:4], [n + 1, n + 2, n + 3], [0, 1, 2]),
               (extra[4:], [n + 4], [0])]
    out = []
    for (tokens, pos, rows), n_threads in zip(batches, threads):
        step.n_threads = n_threads
        out.append(step.step(tokens, pos, np.zeros(len(tokens)), rows))
    return out[1:]


@pytest.mark.parametrize("threads", [(2, 2, 2, 2), (2, 2, 1, 2)])
def test_two_threads_compute_what_one_does(smol, threads):
    prompt = smol.tokenize("The quick brown fox jumps over the lazy")
    for a, b in zip(_run(smol, prompt, (1, 1, 1, 1)), _run(smol, prompt, threads)):
        assert a.shape == b.shape
        assert np.allclose(a, b, atol=1e-3 * np.abs(a).max())
