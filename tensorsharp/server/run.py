"""`tensorsharp serve`: the app under gevent's WSGI server, until interrupted or terminated."""
from __future__ import annotations

import errno
import resource
import signal
import socket
import sys
import time

import gevent
import gevent.event
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer

from tensorsharp.errors import TensorSharpError

BACKLOG = 256


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

    def _write(self, data):
        # A streamed token's frame as one chunk made by one format: gevent builds a bytearray of
        # three pieces. An empty write sends nothing (in chunked encoding it would end the body).
        if data:
            self._sendall(b"%x\r\n%s\r\n" % (len(data), data) if self.response_use_chunked else data)

    def _sendall(self, data):
        # gevent's sendall asks the kernel for the send buffer's size (a getsockopt) before every
        # write, and a stream writes one small frame per token: one send takes almost every frame
        # whole, and sendall (same timeout) finishes what it leaves.
        try:
            sent = self.socket.send(data)
            if sent < len(data):
                self.socket.sendall(memoryview(data)[sent:])
        except OSError as ex:
            self.status = f"socket error: {ex}"
            if self.code > 0:
                self.code = -self.code
            raise
        self.response_length += len(data)

    def get_environ(self):
        env = super().get_environ()
        # Lets a request notice its client hanging up while it waits (server.bridge).
        env["tensorsharp.socket"] = self.socket
        return env

    def format_request(self):
        # The access line of an error says why, so the log alone explains a client's 4xx or 5xx.
        line = super().format_request()
        reason = (self.environ or {}).get("tensorsharp.error")
        return f"{line} {' '.join(reason.split())}" if reason else line


def _max_connections() -> int:
    """Connections served at once: what the descriptor limit leaves after the model, logs and
    worker threads (~64), at most 1024."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(8, min(1024, soft - 64)) if soft != resource.RLIM_INFINITY else 1024


def listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound before the model loads so a taken port fails at once.
    TensorSharpError with a one-line reason when it cannot be bound."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    except socket.gaierror as e:
        raise TensorSharpError(f"cannot listen on {host}: {e.strerror}; choose another address with --host") from None
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise TensorSharpError(f"port {port} on {host} is already in use; "
                                   f"stop what holds it or choose another with --port") from None
        raise TensorSharpError(f"cannot listen on {host}:{port}: {e.strerror}; "
                               f"choose another port with --port or address with --host") from None
    sock.setblocking(False)
    return sock


def serve(app, listener: socket.socket, access_log=True, drain_seconds: float = 10.0, io_timeout: float = 30.0,
          max_connections: int | None = None) -> None:
    """Serves app on listener (from listen()) until SIGINT or SIGTERM, then drains and stops."""
    limit = max_connections or _max_connections()
    # The pool lets a stop wait for the handlers; its headroom is for the refusals past the limit.
    server = WSGIServer(listener, app, handler_class=_Handler, log=sys.stderr if access_log else None,
                        spawn=Pool(limit + 32))
    server.connections, server.responses, server.max_connections, server.io_timeout = 0, 0, limit, io_timeout
    server.start()
    state = app.extensions["tensorsharp"]
    print(_serving_line(state, *listener.getsockname()[:2]), file=sys.stderr, flush=True)
    stop = gevent.event.Event()
    # Handled by gevent, Ctrl-C ends the wait below instead of raising KeyboardInterrupt inside
    # the hub, which prints a traceback and a timestamp.
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, stop.set)
    try:
        stop.wait()
        print(f"tensorsharp: stopping; requests in flight get up to {drain_seconds:g} s to finish",
              file=sys.stderr, flush=True)
        drain(app, server, drain_seconds)
    finally:
        server.stop(timeout=0.5)   # what is left are idle kept-alive connections
        state.close()


def _serving_line(state, host: str, port: int) -> str:
    # A function of its own so no reference to the default model outlives it: a model kept
    # referenced here would never be freed once evicted.
    served = state.served
    vision = f", images through {served.images.path.name}" if served.images is not None else ""
    others = len(state.catalog.specs()) - 1
    more = f"; {others} more model{'s' * (others != 1)} on demand" if others > 0 else ""
    return (f"tensorsharp: serving {served.name} on http://{host}:{port} "
            f"(context {served.n_ctx}, parallel {served.scheduler.parallel}{vision}{more})")


def drain(app, server, seconds: float) -> None:
    """A graceful stop: no new connections or requests (503 on kept-alive ones), the requests in
    flight finish within `seconds`, then the engine fails what is left, so each open stream ends
    with an error chunk in its dialect and a complete body instead of a cut connection."""
    state = app.extensions["tensorsharp"]
    state.draining = True
    server.close()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses = [e.served.scheduler.status() for e in state.pool.loaded()]
        if not any(s["active"] or s["pending"] for s in statuses):
            break
        gevent.sleep(0.05)
    state.close()
    # The routes render the engine's "shutting down" failures; give them a moment to write.
    end = time.monotonic() + 2
    while server.responses and time.monotonic() < end:
        gevent.sleep(0.05)
