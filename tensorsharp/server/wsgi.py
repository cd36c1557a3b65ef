"""WSGI entry point for other servers:

    TENSORSHARP_MODEL=smollm2-135m gunicorn -k gevent -w 1 --no-control-socket 'tensorsharp.server.wsgi:app'

One worker: the loaded models, their KV caches and the sessions live in that process. The default
model and the other settings come from the TENSORSHARP_* environment (see tensorsharp.config);
TENSORSHARP_RAY=auto and TENSORSHARP_REPLICAS=N serve each model from N replicas on the Ray cluster
under tensorsharp.server.worker.GeventWorker (`-k tensorsharp.server.worker.GeventWorker`), which
leaves threads unpatched; gunicorn's own gevent worker patches them, and Ray's client cannot start
there, so the app refuses to. Each worker is then a front end of the same replicas.
"""
import atexit

from tensorsharp.server.app import create_app

app = create_app()
# A worker that exits leaves the Ray replicas it joined (the last front end to leave ends them).
atexit.register(app.extensions["tensorsharp"].close)
