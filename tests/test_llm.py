"""The Python API: generation limits, prefix reuse and stop strings on the default model."""
import numpy as np
import pytest

from tensorsharp.errors import ContextFullError
from tensorsharp.llm import Model


@pytest.fixture(scope="module")
def smol():
    return Model("smollm2-135m", n_ctx=64)


def test_generate_refuses_to_overflow_the_context(smol):
    ids = smol.tokenize("Count: 1 2 3 4 5 6 7 8 9 10")
    with pytest.raises(ContextFullError):
        list(smol.generate(ids, max_tokens=200, stop_at_eog=False))


def test_prefix_reuse_gives_the_same_answer(smol):
    ids = smol.tokenize("The capital of France is")
    first = list(smol.generate(ids, 5))
    again = list(smol.generate(ids, 5))  # the cache already holds the prompt
    assert first == again
    fresh = smol.eval(ids)
    assert int(np.argmax(fresh)) == first[0]


def test_generate_stops_at_a_stop_string_across_tokens(smol):
    ids = smol.tokenize("The capital of France is")
    full = list(smol.generate(ids, 12))
    text = smol.detokenize(full)
    stop = text[len(text) // 2: len(text) // 2 + 3]  # likely spans a token boundary
    cut = list(smol.generate(ids, 12, stop=[stop]))
    assert stop not in smol.detokenize(cut)
    assert text.startswith(smol.detokenize(cut))
    assert len(cut) < len(full)
