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
    consumer is sometimes asleep, sometimes draining, when an event arrives. flushing: puts events
    and flushes after some of them, as the Scheduler does once per step."""

    def __init__(self, n_tokens: int, seed: int, flushing: bool = False):
        self.n_tokens = n_tokens
        self.rng = random.Random(seed)
        self.flushing = flushing

    def submit(self, request, sink):
        pauses = [self.rng.choice((0, 0, 0, 1e-5, 1e-3)) for _ in range(self.n_tokens)]
        flushes = [self.rng.random() < 0.3 for _ in range(self.n_tokens)]

        def send(event, flush=True):
            if not self.flushing:
                sink(event)
                return
            sink.put(event)
            if flush:
                sink.flush()

        def run():
            send(Started(1, 0))
            for i, pause in enumerate(pauses):
                if pause:
                    time.sleep(pause)
                send(Token(i, str(i)), flushes[i])
            send(Done("length", 1, 0, self.n_tokens, 0, 0, 0, 0))
        original("_thread", "start_new_thread")(run, ())
        return Handle(request, sink, lambda: None)


@pytest.mark.parametrize("flushing", [False, True], ids=["called", "put-flush"])
@pytest.mark.parametrize("seed", range(3))
def test_no_event_is_lost_or_reordered(seed, flushing):
    n, choices = 3000, 2
    events = EngineEvents(_BurstyEngine(n, seed, flushing), [object()] * choices)
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


def test_put_events_wait_for_the_flush():
    """The consumer is woken by flush(), not by put(): the Scheduler puts a step's events and wakes
    the consumer once, when the step releases the GIL."""
    sinks = []

    class _Engine:
        def submit(self, request, sink):
            sinks.append(sink)
            return Handle(request, sink, lambda: None)

    events = EngineEvents(_Engine(), [object()])
    (sink,) = sinks
    got = []

    def consume():
        for _, event in events:
            got.append(type(event).__name__)
    consumer = gevent.spawn(consume)
    gevent.sleep(0.01)   # the consumer waits for a wake-up

    def on_engine_thread(fn):
        done = original("_thread", "allocate_lock")()
        done.acquire()
        original("_thread", "start_new_thread")(lambda: (fn(), done.release()), ())
        while not done.acquire(blocking=False):
            gevent.sleep(0.001)

    on_engine_thread(lambda: (sink.put(Started(1, 0)), sink.put(Token(0, "a"))))
    gevent.sleep(0.05)
    assert got == []
    on_engine_thread(sink.flush)
    gevent.sleep(0.05)
    assert got == ["Started", "Token"]
    on_engine_thread(lambda: (sink.put(Done("length", 1, 0, 1, 0, 0, 0, 0)), sink.flush()))
    consumer.get(timeout=10)
    assert got == ["Started", "Token", "Done"]
    events.close()
