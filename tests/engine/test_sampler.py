"""Sampler: greedy, filters, penalties, bias, seeds and reported log-probabilities."""
import numpy as np
import pytest

from tensorsharp.engine.sampler import Sampler, SamplingParams, sample_rows


def log_softmax(logits):
    z = logits.astype(np.float64) - np.max(logits)
    return z - np.log(np.exp(z).sum())


def _logits():
    return np.array([1.0, 3.0, 2.0, 0.5, 2.9, -1.0], dtype=np.float32)


def _counts(params, logits, n=3000):
    s = Sampler(params)
    c = np.zeros(logits.size, int)
    for _ in range(n):
        c[s.sample(logits).token] += 1
    return c


def test_greedy_is_argmax():
    assert Sampler(SamplingParams()).sample(_logits()).token == 1


def test_top_k_limits_candidates():
    c = _counts(SamplingParams(temperature=1.0, top_k=2, seed=1), _logits())
    assert set(np.nonzero(c)[0]) == {1, 4}


def test_top_p_limits_candidates():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    c = _counts(SamplingParams(temperature=1.0, top_p=0.7, seed=2), logits)
    assert set(np.nonzero(c)[0]) == {0, 1}


def test_min_p_limits_candidates():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    c = _counts(SamplingParams(temperature=1.0, min_p=0.5, seed=3), logits)
    assert set(np.nonzero(c)[0]) == {0, 1}


def test_temperature_follows_softmax():
    logits = np.log(np.array([0.6, 0.3, 0.1], dtype=np.float32))
    c = _counts(SamplingParams(temperature=1.0, seed=4), logits, n=6000) / 6000
    assert np.allclose(c, [0.6, 0.3, 0.1], atol=0.03)


def test_seed_reproduces():
    p = SamplingParams(temperature=1.5, seed=42)
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(1000).astype(np.float32)
    a = [Sampler(p).sample(logits).token for _ in range(5)]
    s1, s2 = Sampler(p), Sampler(p)
    assert [s1.sample(logits).token for _ in range(20)] == [s2.sample(logits).token for _ in range(20)]
    assert len(set(a)) == 1


def test_rows_sampled_together_equal_each_sampler_alone():
    """Seeded samplers with penalties, bias and log-probabilities: sample_rows gives what each
    sample() gives, and leaves every sampler's seed stream and window where sample() would."""
    rng = np.random.default_rng(3)
    logits = [rng.standard_normal(5000).astype(np.float32) for _ in range(6)]
    params = [SamplingParams(temperature=0.9, top_k=40, top_p=0.9, min_p=0.05, repeat_penalty=1.2, seed=1,
                             n_probs=3),
              SamplingParams(), SamplingParams(temperature=1.0, seed=2, logit_bias={5: 4.0}),
              SamplingParams(temperature=0.7, presence_penalty=0.5, frequency_penalty=0.3, seed=3),
              SamplingParams(temperature=2.0, top_p=0.5, seed=4), SamplingParams(n_probs=2)]
    history = list(range(40))
    alone = [Sampler(p, history) for p in params]
    together = [Sampler(p, history) for p in params]
    for _ in range(3):
        want = [s.sample(lg) for s, lg in zip(alone, logits)]
        got = sample_rows(list(zip(together, logits)), n_threads=2)
        assert got == want
        for a, t, w in zip(alone, together, want):
            a.accept(w.token)
            t.accept(w.token)


def test_repeat_penalty_and_window():
    s = Sampler(SamplingParams(repeat_penalty=2.0, repeat_last_n=2), history=[1])
    assert s.sample(_logits()).token == 4  # 3.0 / 2 < 2.9
    s.accept(0)
    s.accept(2)  # token 1 falls out of the window of 2
    assert s.sample(_logits()).token == 1


def test_presence_and_frequency_penalties():
    s = Sampler(SamplingParams(frequency_penalty=0.1), history=[1, 1])
    assert s.sample(_logits()).token == 4  # 3.0 - 2*0.1 < 2.9
    s = Sampler(SamplingParams(presence_penalty=0.2), history=[1, 1])
    assert s.sample(_logits()).token == 4


def test_logit_bias():
    assert Sampler(SamplingParams(logit_bias={5: 10.0})).sample(_logits()).token == 5
    assert Sampler(SamplingParams(logit_bias={1: -100.0})).sample(_logits()).token == 4


def test_bitmask_restricts_tokens():
    bitmask = np.array([1 << 0 | 1 << 3], np.uint32)  # tokens 0 and 3
    assert Sampler(SamplingParams()).sample(_logits(), bitmask).token == 0
    drawn = {Sampler(SamplingParams(temperature=2.0, seed=s)).sample(_logits(), bitmask).token for s in range(50)}
    assert drawn == {0, 3}


def test_logprobs_report_model_distribution():
    out = Sampler(SamplingParams(n_probs=3)).sample(_logits())
    lp = log_softmax(_logits())
    assert out.logprob == pytest.approx(lp[1])
    assert [t for t, _ in out.top] == [1, 4, 2]
    assert out.top[0][1] == pytest.approx(lp[1])


def test_validation():
    with pytest.raises(ValueError):
        SamplingParams(temperature=-1).validate(10)
    with pytest.raises(ValueError):
        SamplingParams(logit_bias={99: 1.0}).validate(10)


def test_penalty_window_slides_past_its_buffer():
    s = Sampler(SamplingParams(repeat_last_n=3, presence_penalty=1.0), history=range(100))
    for t in range(500):
        s.accept(t % 7)
    assert s.recent.tolist() == [(t % 7) for t in range(497, 500)]
    whole = Sampler(SamplingParams(repeat_last_n=-1, presence_penalty=1.0), history=[5])
    for t in range(300):
        whole.accept(t)
    assert whole.recent.tolist() == [5, *range(300)]
    assert Sampler(SamplingParams(repeat_last_n=0), history=[1, 2]).recent.size == 0
