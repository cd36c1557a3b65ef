"""EngineEvents: every event a real OS thread sends reaches the consuming greenlet, in order."""
import random
import time

import gevent
import pytest

from tensorsharp.engine.request import Done, Handle, Started, Token
from tensorsharp.engine.thread import original
from tensorsharp.server.bridge import EngineEvents


class _BurstyEngine:
    """Sends each request's events from its own OS thread, in bursts with pauses between, so the
    consumer is sometimes asleep, sometimes draining, when an event arrives."""

    def __init__(self, n_tokens: int, seed: int):
        self.n_tokens = n_tokens
        self.rng = random.Random(seed)

    def submit(self, request, sink):
        pauses = [self.rng.choice((0, 0, 0, 1e-5, 1e-3)) for _ in range(self.n_tokens)]

        def run():
            sink(Started(1, 0))
            for i, pause in enumerate(pauses):
                if pause:
                    time.sleep(pause)
                sink(Token(i, str(i)))
            sink(Done("length", 1, 0, self.n_tokens, 0, 0, 0, 0))
        original("_thread", "start_new_thread")(run, ())
        return Handle(request, sink, lambda: None)


@pytest.mark.parametrize("seed", range(3))
def test_no_event_is_lost_or_reordered(seed):
    n, choices = 3000, 2
    events = EngineEvents(_BurstyEngine(n, seed), [object()] * choices)
    got = {i: [] for i in range(choices)}
    rng = random.Random(seed)

    def consume():
        for index, event in events:
            if isinstance(event, Token):
                got[index].append(event.id)
                if rng.random() < 0.05:
                    gevent.sleep(0)   # as a socket write that waits would
    # A lost wake-up leaves the consumer asleep with events waiting: the timeout catches it.
    gevent.spawn(consume).get(timeout=60)
    events.close()
    assert got == {i: list(range(n)) for i in range(choices)}
