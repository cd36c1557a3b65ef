"""The scheduler on the real SmolLM2 model: outputs match Model.generate, batching, prefix reuse,
LRU eviction, cancellation, the bounded queue, context limits and token constraints."""
import threading
import time

import numpy as np
import pytest

from tensorsharp.chat.template import ChatTemplate
from tensorsharp.engine import scheduler as sched
from tensorsharp.engine.request import (Done, Failed, GenerationRequest, PromptImage, Queued, QueueFullError,
                                        Started, Token)
from tensorsharp.engine.sampler import SamplingParams
from tensorsharp.errors import ContextFullError, TensorSharpError
from tensorsharp.llm import Model

N_CTX = 256


@pytest.fixture(scope="module")
def smol():
    return Model("smollm2-135m", n_ctx=N_CTX)


class Collector:
    """A sink that records events (with a shared order log) and signals when the request ends."""

    order: list = []

    def __init__(self, name=""):
        self.name = name
        self.events = []
        self.finished = threading.Event()

    def __call__(self, event):
        self.events.append(event)
        Collector.order.append((self.name, type(event).__name__))
        if isinstance(event, (Done, Failed)):
            self.finished.set()

    def wait(self, timeout=60):
        assert self.finished.wait(timeout), f"request {self.name} did not finish"
        return self

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def ids(self):
        return [e.id for e in self.of(Token)]

    @property
    def text(self):
        return "".join(e.text for e in self.of(Token))

    @property
    def done(self):
        (d,) = self.of(Done)
        return d


def make(smol, **kw):
    kw.setdefault("n_ctx", N_CTX)
    kw.setdefault("n_threads", 1)   # no spinning thread pool to stall on a busy shared machine
    return sched.build(smol.transformer, smol.tokenizer, **kw)


def run(s, prompt, max_tokens=8, **kw):
    c = Collector()
    s.submit(GenerationRequest(prompt, max_tokens, **kw), c)
    return c.wait()


def chat(smol, text):
    template = ChatTemplate.for_model(smol.gguf.metadata, smol.tokenizer)
    return smol.tokenize_prompt(template.render([{"role": "user", "content": text}]))


@pytest.fixture(autouse=True)
def _fresh_order():
    Collector.order.clear()


def test_greedy_output_equals_model_generate(smol):
    ids = smol.tokenize("The capital of France is")
    want = list(smol.generate(ids, 10, stop_at_eog=False))
    with make(smol) as s:
        c = run(s, ids, 10, stop_at_eog=False)
    assert c.ids == want
    assert c.text == smol.detokenize(want)
    assert c.of(Started) == [Started(len(ids), 0)]
    d = c.done
    assert (d.reason, d.prompt_tokens, d.completion_tokens) == ("length", len(ids), 10)
    assert d.total_ns >= d.prompt_ns + d.eval_ns > 0


def test_end_of_generation_token_stops_without_text(smol):
    ids = chat(smol, "What is 2+3?")
    want = list(smol.generate(ids, 60))
    assert smol.tokenizer.is_eog(want[-1]), "the model should end its turn within 60 tokens"
    with make(smol) as s:
        c = run(s, ids, 60)
    assert c.ids == want
    assert c.done.reason == "stop"
    assert c.text == smol.detokenize(want[:-1])
    assert "<|im_end|>" not in c.text


# How far apart two rounding paths' log-probabilities may lie: where a lone row takes the matvec
# (kernels.rows_exact is false: AVX2, Q2_K, Q3_K), decoding one sequence alone and beside another
# differ; their sums agree to ~1e-7, but a flipped int8 rounding of an activation grows through the
# layers to ~0.15 nats on a token's log-probability. Elsewhere the outputs are the same.
NEAR_TIE = 0.3


def assert_same_until_near_tie(model, prompt, got, want):
    """got == want, or they part where the model barely prefers want's token to got's."""
    i = next((k for k, (g, w) in enumerate(zip(got, want)) if g != w), None)
    if i is None:
        assert len(got) == len(want)
        return
    logits = model.eval(prompt + want[:i])
    assert logits[want[i]] - logits[got[i]] < NEAR_TIE, f"parted at {i} with a margin of " \
        f"{logits[want[i]] - logits[got[i]]:.3f}"


def test_two_parallel_requests_each_equal_their_solo_output(smol):
    a, b = smol.tokenize("The capital of France is"), smol.tokenize("def fibonacci(n):")
    solo_a = list(smol.generate(a, 12, stop_at_eog=False))
    solo_b = list(smol.generate(b, 12, stop_at_eog=False))
    Collector.order.clear()
    with make(smol, parallel=2) as s:
        ca, cb = Collector("a"), Collector("b")
        s.submit(GenerationRequest(a, 12, stop_at_eog=False), ca)
        s.submit(GenerationRequest(b, 12, stop_at_eog=False), cb)
        ca.wait(), cb.wait()
    assert_same_until_near_tie(smol, a, ca.ids, solo_a)
    assert_same_until_near_tie(smol, b, cb.ids, solo_b)
    # They decoded together: b's tokens arrived before a was done.
    first_b = Collector.order.index(("b", "Token"))
    assert first_b < Collector.order.index(("a", "Done"))
    assert not ca.of(Queued) and not cb.of(Queued)


def test_parallel_sampled_requests_draw_together_and_each_equal_its_solo_output(smol, monkeypatch):
    """Seeded sampling in a batch: each step's first rows are sampled in one call on the pool's
    threads, and every request gets the tokens it gets alone."""
    prompts = [smol.tokenize(t) for t in ("Once upon a time", "The best way to cook rice", "In 1999,")]
    params = [SamplingParams(temperature=0.9, top_k=40, top_p=0.9, repeat_penalty=1.1, seed=11),
              SamplingParams(temperature=1.2, min_p=0.05, seed=12, n_probs=2), SamplingParams()]

    def outputs(parallel):
        with make(smol, parallel=parallel, n_threads=2, speculative=False) as s:
            cs = [Collector(str(i)) for i in range(3)]
            for p, sp, c in zip(prompts, params, cs):
                s.submit(GenerationRequest(p, 16, sp, stop_at_eog=False), c)
            return [[(e.id, e.logprob, e.top) for e in c.wait().of(Token)] for c in cs]

    solo = outputs(1)
    together = []
    original = sched.sample_rows
    monkeypatch.setattr(sched, "sample_rows", lambda jobs, n: together.append(len(jobs)) or original(jobs, n))
    assert outputs(3) == solo
    assert together and max(together) == 3


def test_a_failure_sampling_rows_together_leaves_each_to_be_sampled_alone(smol, monkeypatch):
    def broken(jobs, n):
        raise RuntimeError("boom")

    monkeypatch.setattr(sched, "sample_rows", broken)
    prompts = [smol.tokenize("Once upon a time"), smol.tokenize("In 1999,")]
    with make(smol, parallel=2, speculative=False) as s:
        cs = [Collector(str(i)) for i in range(2)]
        for p, c in zip(prompts, cs):
            s.submit(GenerationRequest(p, 6, stop_at_eog=False), c)
        assert [len(c.wait().ids) for c in cs] == [6, 6]


def test_second_turn_reuses_the_cached_prefix(smol):
    first = chat(smol, "Name a color.")
    with make(smol) as s:
        c1 = run(s, first, 8)
        second = first + c1.ids + smol.tokenize("<|im_end|>\n<|im_start|>user\nAnother one.<|im_end|>\n"
                                                "<|im_start|>assistant\n")
        c2 = run(s, second, 8)
        again = run(s, second, 8, reuse_prefix=False)
    assert c2.done.cached_tokens >= len(first) + len(c1.ids) - 1 > 0
    assert c2.of(Started)[0].cached_tokens == c2.done.cached_tokens
    assert again.done.cached_tokens == 0
    assert again.ids == c2.ids


def test_identical_prompt_reevaluates_its_last_token(smol):
    ids = smol.tokenize("Once upon a time")
    with make(smol) as s:
        c1, c2 = run(s, ids, 4), run(s, ids, 4)
    assert c2.done.cached_tokens == len(ids) - 1
    assert c1.ids == c2.ids


def test_least_recently_used_slot_is_evicted(smol):
    p1, p2, p3 = (smol.tokenize(t) for t in ("Apples are", "Bicycles have", "Clouds float"))
    with make(smol, parallel=1, cache_slots=1) as s:   # two slots
        for p in (p1, p2, p3):   # p3 evicts p1, the least recently used
            run(s, p, 3)
        assert run(s, p2 + [42], 2).done.cached_tokens == len(p2)
        assert run(s, p1 + [42], 2).done.cached_tokens == 0


def test_session_keeps_its_slot(smol):
    p1 = smol.tokenize("Apples are red and")
    with make(smol, parallel=1, cache_slots=1) as s:
        run(s, p1, 3, session="s1")
        # Another request sharing s1's prefix gets a copy of it in the other slot ...
        other = run(s, p1 + smol.tokenize(" green"), 3)
        # ... so s1 still finds its whole history.
        mine = run(s, p1 + [42], 2, session="s1")
    assert other.done.cached_tokens == len(p1)
    assert mine.done.cached_tokens == len(p1)


def test_a_shared_opening_does_not_take_another_conversations_slot(smol):
    system = smol.tokenize("You are a helpful assistant. Answer briefly.")
    a = system + smol.tokenize(" Apples are red, and bananas are yellow, and grapes are")
    b = system + smol.tokenize(" Clouds")
    with make(smol, parallel=1, cache_slots=2) as s:   # three slots
        first = run(s, a, 4)
        run(s, b, 3)   # shares only the opening with a's slot: copied into another slot
        follow = run(s, a + first.ids + [42], 2)   # a's next turn finds its whole history
        # A prompt that keeps most of what a slot holds takes that slot itself.
        run(s, b + [43], 2)
        assert follow.done.cached_tokens == len(a) + len(first.ids) - 1   # its last token was never evaluated
        third = run(s, a + first.ids + [42, 44], 2)
    assert third.done.cached_tokens >= len(a) + len(first.ids)


def test_cancel_ends_an_active_request_and_frees_the_engine(smol):
    ids = smol.tokenize("Count to a thousand: 1, 2, 3,")
    with make(smol, parallel=1) as s:
        long = Collector("long")
        h = s.submit(GenerationRequest(ids, 200, stop_at_eog=False), long)
        waiting = Collector("waiting")
        s.submit(GenerationRequest(ids, 3, stop_at_eog=False), waiting)
        while not long.of(Token):
            long.finished.wait(0.01)
        h.cancel()
        long.wait()
        assert long.done.reason == "cancelled" and long.done.completion_tokens < 200
        waiting.wait()
        assert waiting.of(Queued) == [Queued(1)]
        assert waiting.done.reason == "length"
        assert s.status()["active"] == 0


def test_cancel_removes_a_waiting_request(smol):
    ids = smol.tokenize("Count to a thousand: 1, 2, 3,")
    with make(smol, parallel=1) as s:
        long = Collector("long")
        h_long = s.submit(GenerationRequest(ids, 200, stop_at_eog=False), long)
        queued = Collector("queued")
        h = s.submit(GenerationRequest(ids, 5), queued)
        while not queued.of(Queued):
            queued.finished.wait(0.01)
        h.cancel()
        queued.wait()
        assert not queued.of(Started) and queued.done.reason == "cancelled"
        h_long.cancel()
        long.wait()


def test_status_counts_the_requests_processed(smol):
    """Every request the engine took up counts once it has left, however it ended; one cancelled
    while still waiting was never taken up."""
    ids = smol.tokenize("Count to a thousand: 1, 2, 3,")
    with make(smol, parallel=1) as s:
        assert s.status()["processed"] == 0
        run(s, ids, 2)
        run(s, [1] * (N_CTX + 5), 4)   # fails before it starts
        long, waiting = Collector("long"), Collector("waiting")
        h_long = s.submit(GenerationRequest(ids, 200, stop_at_eog=False), long)
        h_waiting = s.submit(GenerationRequest(ids, 5), waiting)
        while not waiting.of(Queued):
            waiting.finished.wait(0.01)
        assert s.status()["processed"] == 2
        h_waiting.cancel()
        waiting.wait()
        h_long.cancel()
        long.wait()
        assert s.status() == {"pending": 0, "active": 0, "parallel": 1, "capacity": 16, "processed": 3}


def test_full_queue_refuses(smol):
    ids = smol.tokenize("Count to a thousand: 1, 2, 3,")
    with make(smol, parallel=1, max_queue=1) as s:
        active, waiting = Collector(), Collector()
        first = s.submit(GenerationRequest(ids, 200, stop_at_eog=False), active)
        second = s.submit(GenerationRequest(ids, 200, stop_at_eog=False), waiting)
        with pytest.raises(QueueFullError):
            s.submit(GenerationRequest(ids, 1), Collector())
        while not waiting.of(Queued):
            waiting.finished.wait(0.01)
        assert s.status() == {"pending": 1, "active": 1, "parallel": 1, "capacity": 1, "processed": 0}
        first.cancel(), second.cancel()
        active.wait(), waiting.wait()


def test_prompt_longer_than_the_context_fails(smol):
    with make(smol) as s:
        c = run(s, [1] * (N_CTX + 5), 4)
        assert not c.of(Started)
        (f,) = c.of(Failed)
        assert isinstance(f.error, ContextFullError) and str(N_CTX) in str(f.error)
        assert run(s, smol.tokenize("Hello"), 2).done.reason == "length"


def test_generation_ends_with_length_at_a_full_context(smol):
    with make(smol, n_ctx=16) as s:
        ids = smol.tokenize("One two three four five six seven")
        c = run(s, ids, 100, stop_at_eog=False)
    assert c.done.reason == "length"
    assert len(ids) + c.done.completion_tokens == 16 + 1   # the last token is sampled, not stored


def test_stop_string_ends_generation_without_the_stop_text(smol):
    ids = smol.tokenize("The capital of France is")
    with make(smol) as s:
        full = run(s, ids, 12, stop_at_eog=False)
        stop = full.text[len(full.text) // 2:][:3]
        cut = run(s, ids, 12, stop=[stop], stop_at_eog=False)
    assert cut.done.reason == "stop"
    assert stop not in cut.text and full.text.startswith(cut.text)


def test_sampling_options_are_checked_on_submit(smol):
    with make(smol) as s:
        with pytest.raises(ValueError):
            s.submit(GenerationRequest([1, 2], 4, SamplingParams(temperature=-1)), Collector())


def test_logprobs_are_reported_when_asked(smol):
    ids = smol.tokenize("The capital of France is")
    with make(smol) as s:
        c = run(s, ids, 3, sampling=SamplingParams(n_probs=3))
    for t in c.of(Token):
        assert t.logprob <= 0 and len(t.top) == 3 and t.top[0][0] == t.id


class OnlyTokens:
    """Test-only constraint: allows a fixed set of ids and is done after `n` of them."""

    def __init__(self, allowed, n, n_vocab):
        self.allowed, self.n, self.seen = set(allowed), n, []
        self.bits = np.zeros((n_vocab + 31) // 32, dtype=np.uint32)
        for t in allowed:
            self.bits[t // 32] |= np.uint32(1 << (t % 32))

    def fill_mask(self, out):
        out[:] = self.bits

    def accept(self, token):
        if token not in self.allowed:
            raise TensorSharpError(f"token {token} is not allowed")
        self.seen.append(token)

    def is_done(self):
        return len(self.seen) >= self.n

    def allows_eos(self):
        return False


def test_constraint_masks_tokens_and_ends_when_done(smol):
    ids = smol.tokenize("The capital of France is")
    allowed = [smol.tokenize(w)[0] for w in (" yes", " no", " maybe")]
    constraint = OnlyTokens(allowed, 4, smol.n_vocab)
    with make(smol) as s:
        free = run(s, ids, 4, stop_at_eog=False)
        held = run(s, ids, 50, constraint=constraint, stop_at_eog=False)
    assert not set(free.ids) <= set(allowed)
    assert held.ids == constraint.seen and set(held.ids) <= set(allowed) and len(held.ids) == 4
    assert held.done.reason == "stop"


def test_close_fails_what_is_left(smol):
    ids = smol.tokenize("Count to a thousand: 1, 2, 3,")
    s = make(smol, parallel=1).start()
    active, waiting = Collector("active"), Collector("waiting")
    s.submit(GenerationRequest(ids, 200, stop_at_eog=False), active)
    s.submit(GenerationRequest(ids, 200, stop_at_eog=False), waiting)
    while not active.of(Token):
        active.finished.wait(0.01)
    s.close()
    for c in (active.wait(), waiting.wait()):
        (f,) = c.of(Failed)
        assert "shutting down" in str(f.error)
    with pytest.raises(TensorSharpError):
        s.submit(GenerationRequest(ids, 1), Collector())


class Exploding:
    """A constraint whose mask fill raises: an engine bug must fail only the request it hit."""

    def fill_mask(self, out):
        raise RuntimeError("boom")


def test_a_failing_request_does_not_stop_the_engine(smol):
    ids = smol.tokenize("Hello")
    with make(smol) as s:
        bad = run(s, ids, 3, constraint=Exploding())
        (f,) = bad.of(Failed)
        assert "boom" in str(f.error)
        assert run(s, ids, 3).done.reason == "length"


class FailsOnAccept:
    """A constraint that raises a plain (non-TensorSharp) error once the first token is sampled."""

    def fill_mask(self, out):
        out[:] = 0xFFFFFFFF

    def accept(self, token):
        raise RuntimeError("accept blew up")


@pytest.mark.parametrize("sampling", [SamplingParams(seed=-1), SamplingParams(seed=2 ** 64),
                                      SamplingParams(repeat_last_n=2 ** 63), SamplingParams(top_k=2 ** 63),
                                      SamplingParams(temperature=float("nan"))],
                         ids=["seed-1", "seed2^64", "window2^63", "topk2^63", "nan"])
def test_options_the_sampler_cannot_take_are_refused_on_submit(smol, sampling):
    with make(smol) as s:
        with pytest.raises(ValueError):
            s.submit(GenerationRequest([1, 2], 4, sampling), Collector())


def test_poisoned_requests_past_the_slot_count_leave_other_streams_and_slots_intact(smol, monkeypatch):
    """Requests that fail while starting or while sampling, more of them than there are slots, each
    fail alone: the stream in flight beside them ends normally and every slot is free afterwards."""
    ids = smol.tokenize("Count to a thousand: 1, 2, 3,")
    real_init = sched._Active.__init__

    def init(self, w, *args):
        if w.handle.request.session == "poison":
            raise RuntimeError("start blew up")
        real_init(self, w, *args)

    monkeypatch.setattr(sched._Active, "__init__", init)
    with make(smol, parallel=2, cache_slots=1) as s:
        solo = run(s, ids, 40, stop_at_eog=False).ids
        long = Collector("long")
        s.submit(GenerationRequest(ids, 40, stop_at_eog=False), long)
        bad = []
        for i in range(2 * len(s.slots)):
            c = Collector(f"bad{i}")
            kind = [dict(session="poison"), dict(constraint=FailsOnAccept()), dict(constraint=Exploding())][i % 3]
            s.submit(GenerationRequest(ids[:5 + i], 4, stop_at_eog=False, **kind), c)
            bad.append(c)
        for c in bad:
            (f,) = c.wait().of(Failed)
            assert "blew up" in str(f.error) or "boom" in str(f.error)
        assert long.wait().done.reason == "length"
        assert long.ids == solo
        assert not any(slot.busy for slot in s.slots) and s._starting == 0
        assert run(s, ids, 3).done.reason == "length"
        assert s.stalled(after=30) is None


class PutFlush(Collector):
    """A sink with put/flush that notes, for each event, which flush delivered it."""

    def __init__(self, name=""):
        super().__init__(name)
        self.flushes = 0
        self.delivered = []   # per event: the number of the flush that delivered it

    def put(self, event):
        self(event)

    def flush(self):
        self.flushes += 1
        self.delivered += [self.flushes] * (len(self.events) - len(self.delivered))


def test_each_steps_events_are_flushed_once_before_the_next_forward(smol, monkeypatch):
    """A sink with put/flush (the server's) is woken once per step, before the step's forward
    releases the GIL: every event put in a step's Python is delivered by then, in one flush."""
    ids = smol.tokenize("The capital of France is")
    c = PutFlush()
    undelivered_at_forward = []
    with make(smol, speculative=False) as s:   # one token per step
        real_step = s.stepper.step

        def step(*args, **kw):
            undelivered_at_forward.append(len(c.events) - len(c.delivered))
            return real_step(*args, **kw)

        monkeypatch.setattr(s.stepper, "step", step)
        s.submit(GenerationRequest(ids, 6, stop_at_eog=False), c)
        c.wait()
    assert [type(e) for e in c.events] == [Started] + [Token] * 6 + [Done]
    assert undelivered_at_forward == [0] * 6   # the prompt's step and five decode steps
    # Started before the prompt's step; each token (the last with Done) at the step after it.
    assert c.delivered == [1, 2, 3, 4, 5, 6, 7, 7]


def test_stalled_reports_a_wedged_or_dead_engine(smol):
    s = make(smol)
    assert s.stalled(after=1) is None            # not started
    with s:
        time.sleep(0.1)
        assert s.stalled(after=1) is None        # idle: its loop turns every second
    assert s.stalled(after=1) is None            # closed on purpose
    s._closing = False
    assert "stopped" in s.stalled(after=30)      # the thread ended without close()
    s._beat = time.monotonic() - 100             # a turn began 100 s ago and work is waiting
    s._active.append(object())
    assert "no progress for 100 s" in s.stalled(after=30)
    assert s.stalled(after=200) is None


def test_many_choices_of_one_request_take_one_fair_share(smol):
    """n choices of one request share a group: they hold one queue place between them, and a
    request from someone else gets the next free place instead of waiting for all of them."""
    ids = smol.tokenize("Count to a thousand: 1, 2, 3,")
    group = object()
    with make(smol, parallel=2, cache_slots=0, max_queue=2) as s:
        choices = [Collector(f"g{i}") for i in range(6)]
        for c in choices:
            s.submit(GenerationRequest(ids, 12, stop_at_eog=False, group=group), c)
        other = Collector("other")
        s.submit(GenerationRequest(ids, 4, stop_at_eog=False), other)
        for c in choices + [other]:
            assert c.wait().done.reason == "length"
    started = [name for name, kind in Collector.order if kind == "Started" and name in ("other", "g2", "g3")]
    assert started.index("other") < started.index("g2"), started


# -- images: embedding rows in the prompt -----------------------------------------------------------

N_IMAGE = 10


def _image(smol, seed: int, start: int, n: int = N_IMAGE) -> PromptImage:
    rows = np.random.default_rng(seed).standard_normal((n, smol.transformer.hparams.n_embd)).astype(np.float32)
    return PromptImage(start, 0.15 * rows, digest=f"image-{seed}")   # token embeddings' scale


def _with_image(smol, before: str, after: str, seed: int = 0):
    """(prompt ids with -1 placeholders, its image) for text, an image, text."""
    a, b = smol.tokenize(before), smol.tokenize(after, add_special=False)
    return a + [-1] * N_IMAGE + b, [_image(smol, seed, len(a))]


def _first_logits(smol, prompt, images):
    """Logits after the prompt, from one direct stepper call (image rows seeing their whole image)."""
    embd = np.zeros((len(prompt), smol.transformer.hparams.n_embd), np.float32)
    end = np.arange(1, len(prompt) + 1)
    for im in images:
        embd[im.start:im.start + im.n_tokens] = im.embd
        end[im.start:im.start + im.n_tokens] = im.start + im.n_tokens
    s = make(smol)
    s.cache.reserve(0, len(prompt))
    return s.stepper.step(prompt, np.arange(len(prompt)), np.zeros(len(prompt)), [len(prompt) - 1],
                          embd=embd, attn_end=end)[0]


def test_image_prompt_counts_its_image_tokens_and_uses_the_embeddings(smol):
    prompt, images = _with_image(smol, "Look at this:", " What is it?")
    with make(smol) as s:
        c = run(s, prompt, 4, images=images)
    assert c.done.prompt_tokens == len(prompt) > N_IMAGE
    assert c.ids[0] == int(np.argmax(_first_logits(smol, prompt, images)))
    other = _image(smol, 7, images[0].start)
    assert np.abs(_first_logits(smol, prompt, [other]) - _first_logits(smol, prompt, images)).max() > 0.1


def test_an_image_is_never_split_across_steps(smol):
    prompt, images = _with_image(smol, "One two three four five six seven", " eight nine")
    start = images[0].start
    logprobs = SamplingParams(n_probs=1)
    with make(smol) as s:
        whole = run(s, prompt, 6, images=images, sampling=logprobs)
    # Batches of 12 would cut the image at position 12; the scheduler stops the chunk before it.
    assert start < 12 < start + N_IMAGE
    with make(smol, n_batch=12, parallel=1) as s:
        chunked = run(s, prompt, 6, images=images, sampling=logprobs)
    assert chunked.ids == whole.ids
    np.testing.assert_allclose([t.logprob for t in chunked.of(Token)], [t.logprob for t in whole.of(Token)],
                               atol=1e-3)


def test_second_turn_reuses_the_image_and_a_changed_image_invalidates_from_it(smol):
    prompt, images = _with_image(smol, "Look at this:", " Describe it.")
    start = images[0].start
    with make(smol, parallel=1, cache_slots=1) as s:
        c1 = run(s, prompt, 4, images=images, session="a")
        follow = prompt + c1.ids + smol.tokenize(" And the colour?", add_special=False)
        c2 = run(s, follow, 4, images=images, session="a")
        changed = run(s, follow, 4, images=[_image(smol, 9, start)], session="a")
    assert c2.done.cached_tokens >= len(prompt) + len(c1.ids) - 1 > start + N_IMAGE
    assert changed.done.cached_tokens == start


def test_a_prompt_cut_inside_an_image_keeps_nothing_of_it(smol):
    prompt, images = _with_image(smol, "Look:", "")   # the prompt ends with the image
    with make(smol) as s:
        run(s, prompt, 2, images=images)
        again = run(s, prompt, 2, images=images)
    # The last position is always evaluated again, and with it its whole image.
    assert again.done.cached_tokens == images[0].start


def test_images_must_fill_the_placeholders(smol):
    prompt, images = _with_image(smol, "Look:", " ok")
    start = images[0].start
    n_embd = smol.transformer.hparams.n_embd
    bad = [
        (prompt, []),                                                         # -1 left unfilled
        (prompt, [_image(smol, 0, start + 1)]),                               # off the placeholders
        (prompt, [_image(smol, 0, start, 5), _image(smol, 1, start + 4, 6)]),  # overlapping
        (prompt, [PromptImage(start, np.zeros((N_IMAGE, n_embd + 1), np.float32), "x")]),
        (prompt[:start] + [-1] * 40, [_image(smol, 0, start, 40)]),           # wider than a batch
    ]
    with make(smol, n_batch=32) as s:
        for p, ims in bad:
            with pytest.raises(ValueError):
                s.submit(GenerationRequest(p, 2, images=ims), Collector())
