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

from tensorsharp.engine.request import Done, Failed


def client_socket(environ: dict | None):
    """The client's socket where the WSGI server exposes it (ours and gunicorn's do)."""
    if not environ:
        return None
    return environ.get("tensorsharp.socket") or environ.get("gunicorn.socket")


class EngineEvents:
    """Submits requests and yields (index, event) in arrival order until each is Done or Failed.

    close() cancels what is unfinished; it runs when the consumer stops early (a client that
    disconnected mid-stream, or a route that raised)."""

    def __init__(self, scheduler, requests: list, environ: dict | None = None):
        self._events: deque = deque()
        self._watcher = gevent.get_hub().loop.async_()
        self._waiter: Waiter | None = None   # set while the consuming greenlet sleeps
        self._watcher.start(self._wake)
        self._open = True
        self._unfinished = set(range(len(requests)))
        self.handles = []
        self._guard = None
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

    def _sink(self, index: int) -> "_Sink":
        return _Sink(self, index)

    def _notify(self) -> None:   # on the engine thread
        if self._open and self._events:
            self._watcher.send()

    def _wake(self) -> None:   # the watcher's callback, on the hub
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.switch(None)

    def __iter__(self):
        # The sink appends before it sends, and the callback runs only on the hub, which this
        # greenlet reaches only through waiter.get(): an event either is in the deque when it is
        # drained or its send finds the waiter. A callback that finds none had its event drained.
        while self._unfinished:
            while self._events:
                index, event = self._events.popleft()
                if isinstance(event, (Done, Failed)):
                    self._unfinished.discard(index)
                yield index, event
            if self._unfinished:
                self._waiter = Waiter()
                self._waiter.get()

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
        # More than this event in the deque: the consumer has not drained the earlier ones,
        # whose wake-up is on its way, and it will find this one in the same drain.
        if len(self._owner._events) == 1:
            self._owner._notify()

    def put(self, event) -> None:
        self._owner._events.append((self._index, event))

    def flush(self) -> None:
        self._owner._notify()
