"""Speculative decoding with a draft model: outputs are the same as plain decoding's whatever the
draft (the target itself, whose guesses nearly all hold, or another model of the vocabulary, whose
guesses mostly fail), several sequences draft in one batch, sampled tokens follow the target's
distribution, a cancelled sequence's draft slot serves the next request, and a draft of another
vocabulary is refused."""

import numpy as np
import pytest

from tensorsharp import kernels
from tensorsharp.engine import scheduler as sched
from tensorsharp.engine.batch import Stepper
from tensorsharp.engine.draft_model import DraftModel
from tensorsharp.engine.guess_budget import StepCosts
from tensorsharp.engine.kv_cache import KVCache
from tensorsharp.engine.request import Done, GenerationRequest
from tensorsharp.engine.sampler import SamplingParams
from tensorsharp.errors import TensorSharpError
from tensorsharp.llm import Model
from tensorsharp.testing.distribution import assert_follows, first_three
from tensorsharp.testing.sinks import Collector

N_CTX = 256


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny random llama models over one 384-token vocabulary (seeds 0 and 1), and one of 600 tokens."""
    from tensorsharp.testing.tiny_gguf import random_model, tiny_config, write_gguf
    d = tmp_path_factory.mktemp("draft")
    paths = {name: write_gguf(random_model(tiny_config("llama", **kw), seed=seed), d / f"{name}.gguf")
             for name, seed, kw in (("target", 0, {}), ("other", 1, {}), ("wide", 0, {"vocab_size": 600}))}
    models = {name: Model(str(p), n_ctx=N_CTX, n_threads=1) for name, p in paths.items()}
    if not kernels.rows_exact(t.type.id for t in models["target"].gguf.tensors.values()):
        pytest.skip("the kernels here score a row differently alone and in a batch: no speculation")
    return models, paths


def scheduler(target, draft=None, parallel=3, p_min=0.0, idle_slots=1, **kw):
    """A scheduler over target whose guesses come from draft (a Model; None: prompt lookup alone).
    p_min 0 keeps a random model's flat distributions from ending every guess at once."""
    cache = KVCache(target.transformer, N_CTX, n_seq=parallel + idle_slots)
    drafter = None if draft is None else DraftModel(draft.transformer, N_CTX, cache.n_seq, target.n_vocab,
                                                    n_threads=1, p_min=p_min)
    return sched.Scheduler(Stepper(target.transformer, cache, n_threads=1), target.tokenizer, parallel=parallel,
                           speculative=True, costs=StepCosts.flat(), drafter=drafter, **kw)


def serve(s, requests):
    with s:
        sinks = [Collector() for _ in requests]
        for r, c in zip(requests, sinks):
            s.submit(r, c)
        return [c.outcome() for c in sinks]


def prompts(n_vocab, n=3, length=12):
    # Distinct tokens: no n-gram of a prompt recurs, so prompt lookup leaves the guessing to the draft.
    rng = np.random.default_rng(5)
    return [rng.permutation(np.arange(1, n_vocab))[:length].tolist() for _ in range(n)]


def test_the_target_as_its_own_draft_guesses_right_in_one_batch_for_several_sequences(tiny):
    (models, _), batches = tiny, []
    target = models["target"]
    reqs = lambda: [GenerationRequest(p, 40, stop_at_eog=False) for p in prompts(target.n_vocab)]  # noqa: E731
    plain = serve(scheduler(target), reqs())
    s = scheduler(target, target)
    propose = s.drafter.propose
    s.drafter.propose = lambda asks: batches.append(len(asks)) or propose(asks)
    assert serve(s, reqs()) == plain
    d = s.drafter
    assert d.proposed >= 60 and d.accepted >= 0.95 * d.proposed, f"{d.accepted} of {d.proposed} held"
    assert max(batches) == 3, "the sequences' guesses were not drafted together"


def test_another_draft_of_the_vocabulary_changes_nothing_but_its_guesses_fail(tiny):
    models, _ = tiny
    target = models["target"]
    reqs = lambda: [GenerationRequest(p, 40, stop_at_eog=False) for p in prompts(target.n_vocab)]  # noqa: E731
    plain = serve(scheduler(target), reqs())
    s = scheduler(target, models["other"])
    assert serve(s, reqs()) == plain
    d = s.drafter
    assert d.proposed >= 40 and d.accepted < 0.3 * d.proposed, f"{d.accepted} of {d.proposed} held"


def test_the_guess_counts_are_whole_when_a_request_is_done(tiny):
    # A caller that reads them on Done (tensorsharp run --verbose) sees its last step's guesses too.
    models, _ = tiny
    target = models["target"]
    s = scheduler(target, target, parallel=1)
    seen = []
    c = Collector()

    def sink(event):
        if isinstance(event, Done):
            seen.append((s.drafted, s.accepted, s.drafter.proposed, s.drafter.accepted))
        c(event)

    with s:
        s.submit(GenerationRequest(prompts(target.n_vocab, n=1)[0], 29, stop_at_eog=False), sink)
        c.outcome()
    assert s.drafter.proposed > 0
    assert seen == [(s.drafted, s.accepted, s.drafter.proposed, s.drafter.accepted)]


def test_a_guess_after_rejected_ones_is_what_a_fresh_draft_guesses(tiny):
    # The slot rewinds past the guessed tokens that did not hold and catches up on what did.
    models, _ = tiny
    draft = models["other"]
    fresh = lambda: DraftModel(draft.transformer, N_CTX, 2, draft.n_vocab, n_threads=1, p_min=0.0)  # noqa: E731
    d = fresh()
    rng = np.random.default_rng(3)
    followers = [d.follow(p) for p in prompts(draft.n_vocab, n=2)]
    for _ in range(6):
        guesses = d.propose([(f, slot, 5) for slot, f in enumerate(followers)])
        for f, guess in zip(followers, guesses):
            assert len(guess) == 5
            held = int(rng.integers(0, 6))
            for t in guess[:held] + [int(rng.integers(1, draft.n_vocab))]:
                f.append(t)
    again = d.propose([(f, slot, 5) for slot, f in enumerate(followers)])
    assert again == [fresh().propose([(fresh().follow(f.ctx), 0, 5)])[0] for f in followers]


def test_seeded_sampled_outputs_are_the_same_with_a_draft(tiny):
    models, _ = tiny
    target = models["target"]
    reqs = lambda: [GenerationRequest(p, 30, stop_at_eog=False,  # noqa: E731
                                      sampling=SamplingParams(temperature=0.3, top_k=10, seed=i, n_probs=2))
                    for i, p in enumerate(prompts(target.n_vocab))]
    plain = serve(scheduler(target), reqs())
    s = scheduler(target, target)
    assert serve(s, reqs()) == plain and s.drafter.accepted > 0


def test_sampled_tokens_follow_the_target_distribution(tiny):
    # The draft (the target itself) guesses its greedy token; at temperature 1 over the top 3 the
    # target samples it about as often as its probability, so guesses hold and fail alike, and
    # the triples of first tokens must come out with the target's probabilities.
    models, _ = tiny
    target = models["target"]
    (ids,) = prompts(target.n_vocab, n=1)
    k, n = 3, 500

    want = first_three(target.eval, ids, k)
    s = scheduler(target, target, parallel=8, max_queue=n)
    got = [tuple(t[0] for t in out[:3]) for out, *_ in serve(s, [
        GenerationRequest(ids, 4, stop_at_eog=False, sampling=SamplingParams(temperature=1.0, top_k=k, seed=seed))
        for seed in range(n)])]
    assert_follows(got, want)
    d = s.drafter
    assert d.proposed >= n / 2 and 0.2 < d.accepted / d.proposed < 0.9, f"{d.accepted} of {d.proposed} held"


def test_a_cancelled_sequence_leaves_its_draft_slot_to_the_next_request(tiny):
    models, _ = tiny
    target = models["target"]
    first, second = prompts(target.n_vocab, n=2)
    plain = serve(scheduler(target, parallel=1), [GenerationRequest(second, 30, stop_at_eog=False)])
    s = scheduler(target, target, parallel=1, idle_slots=0)
    with s:
        handle = []
        c = Collector(on_token=lambda c: len(c.events) == 12 and handle[0].cancel())
        handle.append(s.submit(GenerationRequest(first, 200, stop_at_eog=False), c))
        assert c.outcome()[1] == "cancelled"
        slot = next(sl.index for sl in s.slots if sl.tokens)
        before = s.drafter.proposed, s.drafter.accepted   # the cancelled step's guess counts as failed
        c = Collector()
        s.submit(GenerationRequest(second, 30, stop_at_eog=False, reuse_prefix=False), c)
        assert [c.outcome()] == plain
    d = s.drafter
    assert s.slots[slot].tokens[:len(second)] == second, "the next request did not take the cancelled one's slot"
    proposed, accepted = d.proposed - before[0], d.accepted - before[1]
    assert d.held[slot][:len(second)] == second and accepted >= 20 and accepted >= 0.95 * proposed


def test_a_draft_of_another_vocabulary_is_refused_naming_both_files(tiny):
    from tensorsharp.server.model import ServedModel
    _, paths = tiny
    with pytest.raises(TensorSharpError, match=r"draft model wide\.gguf cannot draft for target\.gguf: .*600"):
        ServedModel.load(str(paths["target"]), draft_model=str(paths["wide"]))
