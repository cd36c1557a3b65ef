"""`tensorsharp serve`: the app under gevent's WSGI server, until interrupted or terminated."""
from __future__ import annotations

import errno
import signal
import socket
import sys

import gevent
import gevent.event
from gevent.pywsgi import WSGIHandler, WSGIServer

from tensorsharp.errors import TensorSharpError

BACKLOG = 256


class _Handler(WSGIHandler):
    def handle(self):
        # Streams are many small writes: without NODELAY each waits for the client's delayed ACK.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().handle()

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


def serve(app, listener: socket.socket, access_log=True) -> None:
    """Serves app on listener (from listen()) until SIGINT or SIGTERM, then stops quietly."""
    server = WSGIServer(listener, app, handler_class=_Handler, log=sys.stderr if access_log else None)
    server.start()
    served = app.extensions["tensorsharp"].served
    host, port = listener.getsockname()[:2]
    vision = f", images through {served.images.path.name}" if served.images is not None else ""
    print(f"tensorsharp: serving {served.name} on http://{host}:{port} "
          f"(context {served.n_ctx}, parallel {served.scheduler.parallel}{vision})", file=sys.stderr, flush=True)
    stop = gevent.event.Event()
    # Handled by gevent, Ctrl-C ends the wait below instead of raising KeyboardInterrupt inside
    # the hub, which prints a traceback and a timestamp.
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, stop.set)
    try:
        stop.wait()
    finally:
        server.stop(timeout=2)
        served.close()
