"""gunicorn's gevent worker with real threads, the one under which the app can reach a Ray cluster:

    TENSORSHARP_RAY=auto gunicorn -k tensorsharp.server.worker.GeventWorker -w 1 --timeout 300 \
        --no-control-socket 'tensorsharp.server.wsgi:app'

gunicorn's own gevent worker monkey-patches threads too, so every thread is a greenlet on the
worker's one OS thread. Ray's driver starts threads (ray_listen_error_messages, ray_print_logs)
whose loops block inside Ray's C++ client on a long poll of the cluster's control store; as
greenlets, the first of them to run blocks that OS thread for good and ray.init never returns. This
worker patches what gevent's server needs (sockets, select, time, ...) and leaves threads real,
which is how `tensorsharp serve` runs: the app keeps its engine, pump and Ray threads off the hub
and wakes the hub through its async watchers (server.bridge), so nothing else changes.
"""
from __future__ import annotations

from gevent import monkey, socket
from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker


class GeventWorker(_GunicornGeventWorker):
    def patch(self):
        monkey.patch_all(thread=False)
        # The listening sockets the arbiter opened, as gevent sockets (gunicorn's patch() does the same).
        self.sockets = [socket.socket(s.FAMILY, socket.SOCK_STREAM, fileno=s.sock.detach()) for s in self.sockets]
