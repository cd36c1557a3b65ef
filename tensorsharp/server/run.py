"""`tensorsharp serve`: the app under gevent's WSGI server, until interrupted or terminated."""
from __future__ import annotations

import signal
import socket
import sys

import gevent
import gevent.event
from gevent.pywsgi import WSGIHandler, WSGIServer


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


def serve(app, host: str, port: int, access_log=True) -> None:
    server = WSGIServer((host, port), app, handler_class=_Handler, log=sys.stderr if access_log else None)
    server.start()
    served = app.extensions["tensorsharp"].served
    vision = f", images through {served.images.path.name}" if served.images is not None else ""
    print(f"tensorsharp: serving {served.name} on http://{host}:{server.server_port} "
          f"(context {served.n_ctx}, parallel {served.scheduler.parallel}{vision})", file=sys.stderr, flush=True)
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    try:
        stop.wait()
    finally:
        server.stop(timeout=2)
        served.close()
