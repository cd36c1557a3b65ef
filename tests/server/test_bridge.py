"""EngineEvents: every event a real OS thread sends reaches the consuming greenlet, in order."""
import random
import socket
import time

import gevent
import gevent.socket
import pytest

from tensorsharp.engine.request import Done, Handle, Started, Token
from tensorsharp.engine.thread import original
from tensorsharp.server.bridge import GATHER, EngineEvents


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


@pytest.mark.parametrize("gather", [0, 0.002], ids=["each", "gathered"])
@pytest.mark.parametrize("flushing", [False, True], ids=["called", "put-flush"])
@pytest.mark.parametrize("seed", range(3))
def test_no_event_is_lost_or_reordered(seed, flushing, gather):
    n, choices = 3000, 2
    events = EngineEvents(_BurstyEngine(n, seed, flushing), [object()] * choices, {GATHER: gather})
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


class _StepEngine:
    """Hands its one sink to the test, which puts events on an OS thread as the Scheduler does."""

    def __init__(self):
        self.sink = None

    def submit(self, request, sink):
        self.sink = sink
        return Handle(request, sink, lambda: None)


def _on_engine_thread(fn) -> None:
    original("_thread", "start_new_thread")(fn, ())


def _put(sink, *evs) -> None:
    for e in evs:
        sink.put(e)
    sink.flush()


DONE = Done("length", 1, 0, 1, 0, 0, 0, 0)


def _drains(gather: float, n: int = 100) -> int:
    """Tokens put one a millisecond: in how many separate drains does the consumer take them?"""
    engine = _StepEngine()
    events = EngineEvents(engine, [object()], {GATHER: gather})

    def run():
        _put(engine.sink, Started(1, 0))
        for i in range(n):
            time.sleep(0.001)
            _put(engine.sink, Token(i, "x"))
        _put(engine.sink, DONE)
    _on_engine_thread(run)
    stamps = []

    def consume():
        for _, event in events:
            if isinstance(event, Token):
                stamps.append(time.perf_counter())
    gevent.spawn(consume).get(timeout=30)
    events.close()
    assert len(stamps) == n
    # Tokens of one drain come microseconds apart; separate drains at least the pacing apart.
    return 1 + sum(b - a > 0.0005 for a, b in zip(stamps, stamps[1:]))


def test_tokens_that_come_close_together_are_taken_together():
    assert _drains(0.02) <= 25        # about one drain per 20 ms of 1 ms tokens
    assert _drains(0.0) >= 50         # each token at once, as it comes


def test_the_first_token_and_the_ending_do_not_wait_for_the_gathering():
    engine = _StepEngine()
    events = EngineEvents(engine, [object()], {GATHER: 5.0})
    got = []

    def consume():
        for _, event in events:
            got.append((type(event).__name__, time.perf_counter()))
    consumer = gevent.spawn(consume)
    gevent.sleep(0.01)
    start = time.perf_counter()
    _on_engine_thread(lambda: _put(engine.sink, Started(1, 0), Token(0, "a")))
    while len(got) < 2 and time.perf_counter() - start < 2:
        gevent.sleep(0.001)
    assert [name for name, _ in got] == ["Started", "Token"]   # not held: nothing was written before it
    _on_engine_thread(lambda: _put(engine.sink, Token(1, "b")))
    gevent.sleep(0.2)
    assert len(got) == 2   # gathering with the next ones
    ended = time.perf_counter()
    _on_engine_thread(lambda: _put(engine.sink, DONE))
    consumer.get(timeout=2)   # the ending cuts the 5 s gathering short
    assert [name for name, _ in got] == ["Started", "Token", "Token", "Done"]
    assert got[-1][1] - ended < 1.0
    events.close()


@pytest.mark.skipif(not hasattr(socket, "TCP_CORK"), reason="Linux's TCP_CORK")
def test_a_drain_of_several_events_is_corked_until_it_is_written():
    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = gevent.socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    engine = _StepEngine()
    events = EngineEvents(engine, [object()], {GATHER: 0.001, "tensorsharp.socket": server})
    corked = []

    def cork() -> int:
        return server.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)

    def consume():
        for _, event in events:
            server.sendall(b"frame\n")
            corked.append(cork())
    consumer = gevent.spawn(consume)
    gevent.sleep(0.01)
    _on_engine_thread(lambda: _put(engine.sink, Started(1, 0), Token(0, "a"), Token(1, "b")))
    deadline = time.perf_counter() + 5
    while len(corked) < 3 and time.perf_counter() < deadline:
        gevent.sleep(0.001)
    gevent.sleep(0.01)
    assert corked == [1, 1, 1] and cork() == 0   # held while the drain was written, then sent
    assert client.recv(100) == b"frame\n" * 3
    _on_engine_thread(lambda: _put(engine.sink, DONE))
    consumer.get(timeout=5)
    assert corked[-1] == 0   # one event alone is not held back
    events.close()
    for s in (client, server, listener):
        s.close()
