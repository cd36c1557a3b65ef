"""The encoder's engine thread: embedding requests batched into encoder passes up to n_batch
tokens, events as the Scheduler sends them, and refusals of what an encoder cannot do."""
import threading

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5")

from tensorsharp.engine.encoding import EncoderScheduler  # noqa: E402
from tensorsharp.engine.request import Done, Embedded, Failed, GenerationRequest  # noqa: E402
from tensorsharp.errors import ContextFullError  # noqa: E402
from tensorsharp.gguf import GGUFFile  # noqa: E402
from tensorsharp.models import load_encoder  # noqa: E402
from tensorsharp.testing import tiny_encoders  # noqa: E402

pytestmark = pytest.mark.hf


class CountingEncoder:
    """The real encoder, counting its passes and the sequences of each."""

    def __init__(self, encoder):
        self.encoder, self.passes = encoder, []
        self.hparams = encoder.hparams

    def encode(self, seqs, n_threads=0):
        self.passes.append(len(seqs))
        return self.encoder.encode(seqs, n_threads)

    def pool(self, states, pooling):
        return self.encoder.pool(states, pooling)


@pytest.fixture(scope="module")
def encoder():
    _, path = tiny_encoders.converted("bert")
    return load_encoder(GGUFFile(path))


def run(scheduler, requests) -> list[list]:
    """Submits every request before the engine starts (so they queue together); their events."""
    events = [[] for _ in requests]
    done = threading.Semaphore(0)

    def sink(i):
        def put(e):
            events[i].append(e)
            if isinstance(e, (Done, Failed)):
                done.release()
        return put
    for i, r in enumerate(requests):
        scheduler.submit(r, sink(i))
    scheduler.start()
    try:
        for _ in requests:
            assert done.acquire(timeout=60)
    finally:
        scheduler.close()
    return events


PROMPTS = [[101, 2000 + i, *range(3000, 3000 + 3 * i), 102] for i in range(6)]   # 2 to 17 tokens


@pytest.mark.parametrize("n_batch, passes", [(512, [6]), (20, [3, 1, 1, 1])])
def test_queued_requests_share_passes_up_to_n_batch(encoder, n_batch, passes):
    spy = CountingEncoder(encoder)
    events = run(EncoderScheduler(spy, n_batch=n_batch, n_threads=1),
                 [GenerationRequest(p, 0, pooling="cls") for p in PROMPTS])
    assert spy.passes == passes
    for p, ev in zip(PROMPTS, events):
        kinds = [type(e).__name__ for e in ev if type(e).__name__ != "Queued"]
        assert kinds == ["Started", "Embedded", "Done"], kinds
        assert ev[-1].reason == "stop" and ev[-1].prompt_tokens == len(p) and ev[-1].completion_tokens == 0
        want = encoder.pool(encoder.encode([p])[0], "cls")
        assert np.abs(ev[-2].vector - want).max() < 1e-5


def test_pooling_as_each_request_asks(encoder):
    events = run(EncoderScheduler(encoder), [GenerationRequest(PROMPTS[3], 0, pooling=m) for m in ("mean", "last")])
    states = encoder.encode([PROMPTS[3]])[0]
    assert np.allclose(events[0][-2].vector, states.mean(0), atol=1e-6)
    assert np.allclose(events[1][-2].vector, states[-1], atol=1e-6)


def test_generation_and_unknown_pooling_are_refused(encoder):
    scheduler = EncoderScheduler(encoder)
    with pytest.raises(ValueError, match="only embeds"):
        scheduler.submit(GenerationRequest([101, 102], 8), lambda e: None)
    with pytest.raises(ValueError, match="pooling"):
        scheduler.submit(GenerationRequest([101, 102], 0, pooling="max"), lambda e: None)


def test_bad_inputs_fail_alone(encoder):
    n_ctx, n_vocab = encoder.hparams.n_ctx_train, encoder.hparams.n_vocab
    events = run(EncoderScheduler(encoder), [GenerationRequest([101] * (n_ctx + 1), 0, pooling="cls"),
                                             GenerationRequest([], 0, pooling="cls"),
                                             GenerationRequest([101, n_vocab], 0, pooling="cls"),
                                             GenerationRequest(PROMPTS[0], 0, pooling="cls")])
    assert isinstance(events[0][-1], Failed) and isinstance(events[0][-1].error, ContextFullError)
    assert isinstance(events[1][-1], Failed)
    assert isinstance(events[2][-1], Failed) and "vocabulary" in str(events[2][-1].error)
    assert isinstance(events[3][-2], Embedded)


def test_status_and_queue_bound(encoder):
    scheduler = EncoderScheduler(encoder, max_queue=1)
    scheduler.submit(GenerationRequest(PROMPTS[0], 0, pooling="cls"), lambda e: None)
    scheduler.submit(GenerationRequest(PROMPTS[1], 0, pooling="cls"), lambda e: None)   # would start at once
    with pytest.raises(Exception, match="queue is full"):
        scheduler.submit(GenerationRequest(PROMPTS[2], 0, pooling="cls"), lambda e: None)
    assert scheduler.status()["pending"] == 2
    assert scheduler.stalled(0.0) is None   # not started
