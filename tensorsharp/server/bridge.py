"""Engine events into a request's greenlet, and a dropped client back out as a cancel.

The engine thread is a real OS thread, so gevent primitives cannot cross to it. Its sink appends
to a deque (thread-safe) and sends the hub's async watcher, the one gevent object that may be
poked from another thread; the watcher's callback, run on the hub, wakes the waiting greenlet.
The Scheduler puts a step's events first and sends the watcher once, as the step releases the GIL
(see engine.request.Sink).
"""
from __future__ import annotations

import socket
from collections import deque

import gevent
from gevent.hub import Waiter
import gevent.socket

from tensorsharp.engine.request import Done, Failed, Token


# request.environ key: seconds within which a stream's tokens are written together (0: each at once).
GATHER = "tensorsharp.gather"


def client_socket(environ: dict | None):
    """The client's socket where the WSGI server exposes it (ours and gunicorn's do)."""
    if not environ:
        return None
    return environ.get("tensorsharp.socket") or environ.get("gunicorn.socket")


class EngineEvents:
    """Submits requests and yields (index, event) in arrival order until each is Done or Failed.

    close() cancels what is unfinished; it runs when the consumer stops early (a client that
    disconnected mid-stream, or a route that raised). environ[GATHER]: see __iter__."""

    def __init__(self, scheduler, requests: list, environ: dict | None = None):
        self._events: deque = deque()
        self._loop = gevent.get_hub().loop
        self._watcher = self._loop.async_()
        self._waiter: Waiter | None = None   # set while the consuming greenlet sleeps
        self._watcher.start(self._on_send)
        self._gather = (environ or {}).get(GATHER, 0.0)
        self._armed = False    # the consumer waits for any event (while it gathers: for its timer or an ending)
        self._urgent = False   # an event other than a Token was put since the last drain
        self._open = True
        self._unfinished = set(range(len(requests)))
        self.handles = []
        self._guard = None
        self._cork = None   # the client's socket, where gathered frames can go out as one segment
        try:
            for i, request in enumerate(requests):
                self.handles.append(scheduler.submit(request, self._sink(i)))
        except BaseException:
            self.close()
            raise
        sock = client_socket(environ)
        if sock is not None:
            # Streams are many small writes: without NODELAY each waits for the client's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._guard = gevent.spawn(self._watch_client, sock)
            if self._gather > 0 and hasattr(socket, "TCP_CORK"):
                self._cork = sock

    def _sink(self, index: int) -> "_Sink":
        return _Sink(self, index)

    def _notify(self) -> None:   # on the engine thread
        if self._open and self._events and (self._armed or self._urgent):
            self._watcher.send()

    def _on_send(self) -> None:   # the watcher's callback, on the hub
        # A send made before the consumer began to gather (its wake-up was already under way)
        # must not end the gathering: only an ending does.
        if self._armed or self._urgent:
            self._wake()

    def _wake(self) -> None:   # on the hub
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.switch(None)

    def __iter__(self):
        # Tokens that follow the last ones written within environ[GATHER] seconds are taken (and
        # written) together: at hundreds of tokens a second a stream then wakes the hub, whose
        # every wake-up finds its caches cold after the decode step, and the client once per
        # gathering instead of once per token. The first token and every ending go at once.
        #
        # The sink appends (and marks anything but a Token urgent) before it checks whether to
        # send, and the consumer arms before it looks at the deque a last time; the callback runs
        # only on the hub, which this greenlet reaches only through waiter.get(). So an event is
        # either in the deque when it is drained or its send finds the waiter. A callback that
        # finds none had its event drained.
        gathered = False
        while self._unfinished:
            self._urgent = False
            # Several events' frames are written one by one as the route renders them; corked,
            # the kernel sends them together (one segment, one wake-up of the client) at the uncork.
            corked = len(self._events) > 1 and self._set_cork(1)
            try:
                while self._events:
                    index, event = self._events.popleft()
                    if type(event) is Token:
                        gathered = True
                    elif isinstance(event, (Done, Failed)):
                        self._unfinished.discard(index)
                    yield index, event
            finally:
                if corked:
                    self._set_cork(0)
            if not self._unfinished:
                break
            hold = gathered and self._gather > 0
            gathered = False
            self._armed = not hold
            if self._events and (self._armed or self._urgent):
                self._armed = False
                continue
            self._waiter = Waiter()
            if hold:
                # Tokens were written a moment ago: the next ones gather until the timer,
                # unless an ending (or another choice's start) comes first. A fresh timer, from
                # the clock's now: gevent restarts a fired one at its old deadline, and the
                # loop's notion of now is that of its last turn.
                timer = self._loop.timer(self._gather)
                timer.start(self._wake, update=True)
            try:
                self._waiter.get()
            finally:
                self._armed = False
                if hold:
                    timer.close()

    def _set_cork(self, on: int) -> bool:
        if self._cork is None:
            return False
        try:
            self._cork.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, on)
            return True
        except OSError:   # the client is gone: nothing to hold back
            return False

    def cancel(self) -> None:
        """Asks the engine to end every request; the consumer still receives their Done events."""
        for h in self.handles:
            h.cancel()

    def close(self) -> None:
        for i in self._unfinished:
            if i < len(self.handles):
                self.handles[i].cancel()
        self._open = False
        self._watcher.stop()
        if self._guard is not None:
            self._guard.kill(block=False)

    def _watch_client(self, sock) -> None:
        """Cancels everything when the client closes its connection while we are still working.

        Nothing is read from a client while its response is pending, so the socket becoming
        readable with no data to peek at means it closed (data would be a pipelined request)."""
        while True:
            try:
                gevent.socket.wait_read(sock.fileno())
                gone = sock.recv(1, socket.MSG_PEEK) == b""
            except BlockingIOError:
                continue   # woken without data after all
            except OSError:
                gone = True
            break
        if gone:
            self.cancel()


class _Sink:
    """One request's events into its EngineEvents; called on the engine thread."""

    __slots__ = ("_owner", "_index")

    def __init__(self, owner: EngineEvents, index: int):
        self._owner, self._index = owner, index

    def __call__(self, event) -> None:
        self.put(event)
        self.flush()

    def put(self, event) -> None:
        self._owner._events.append((self._index, event))
        if type(event) is not Token:
            self._owner._urgent = True

    def flush(self) -> None:
        self._owner._notify()
