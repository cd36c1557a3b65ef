"""`tensorsharp serve`: the app under gevent's WSGI server, until interrupted or terminated."""
from __future__ import annotations

import resource
import signal
import socket
import sys
import time

import gevent
import gevent.event
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer


REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 2\r\n"
           b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")


class _Handler(WSGIHandler):
    def handle(self):
        server = self.server
        if server.connections >= server.max_connections:
            body = b'{"error": "too many connections; retry later"}'
            try:
                self.socket.sendall(REFUSAL % (len(body), body))
            except OSError:
                pass
            return
        server.connections += 1
        try:
            # Streams are many small writes: without NODELAY each waits for the client's delayed ACK.
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # No read or write may wait longer: idle keep-alive connections, half-sent requests
            # (slowloris) and clients that stop reading a stream give their descriptor back.
            self.socket.settimeout(server.io_timeout)
            return super().handle()
        finally:
            server.connections -= 1

    def handle_one_response(self):
        # Responses being written, apart from idle kept-alive connections: what a stop waits for.
        self.server.responses += 1
        try:
            return super().handle_one_response()
        finally:
            self.server.responses -= 1

    def get_environ(self):
        env = super().get_environ()
        # Lets a request notice its client hanging up while it waits (server.bridge).
        env["tensorsharp.socket"] = self.socket
        return env


def _max_connections() -> int:
    """Connections served at once: what the descriptor limit leaves after the model, logs and
    worker threads (~64), at most 1024."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(8, min(1024, soft - 64)) if soft != resource.RLIM_INFINITY else 1024


def serve(app, host: str, port: int, access_log=True, drain_seconds: float = 10.0, io_timeout: float = 30.0,
          max_connections: int | None = None) -> None:
    limit = max_connections or _max_connections()
    # The pool lets a stop wait for the handlers; its headroom is for the refusals past the limit.
    server = WSGIServer((host, port), app, handler_class=_Handler, log=sys.stderr if access_log else None,
                        spawn=Pool(limit + 32))
    server.connections, server.responses, server.max_connections, server.io_timeout = 0, 0, limit, io_timeout
    server.start()
    served = app.extensions["tensorsharp"].served
    vision = f", images through {served.images.path.name}" if served.images is not None else ""
    print(f"tensorsharp: serving {served.name} on http://{host}:{server.server_port} "
          f"(context {served.n_ctx}, parallel {served.scheduler.parallel}{vision})", file=sys.stderr, flush=True)
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    try:
        stop.wait()
        print(f"tensorsharp: stopping; requests in flight get up to {drain_seconds:g} s to finish",
              file=sys.stderr, flush=True)
        drain(app, server, drain_seconds)
    finally:
        server.stop(timeout=0.5)   # what is left are idle kept-alive connections
        served.close()


def drain(app, server, seconds: float) -> None:
    """A graceful stop: no new connections or requests (503 on kept-alive ones), the requests in
    flight finish within `seconds`, then the engine fails what is left, so each open stream ends
    with an error chunk in its dialect and a complete body instead of a cut connection."""
    state = app.extensions["tensorsharp"]
    state.draining = True
    server.close()
    scheduler = state.served.scheduler
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = scheduler.status()
        if not status["active"] and not status["pending"]:
            break
        gevent.sleep(0.05)
    state.served.close()
    # The routes render the engine's "shutting down" failures; give them a moment to write.
    end = time.monotonic() + 2
    while server.responses and time.monotonic() < end:
        gevent.sleep(0.05)
