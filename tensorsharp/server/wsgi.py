"""WSGI entry point for other servers:

    TENSORSHARP_MODEL=smollm2-135m gunicorn -k gevent -w 1 --no-control-socket 'tensorsharp.server.wsgi:app'

One worker: the loaded models, their KV caches and the sessions live in that process. The default
model and the other settings come from the TENSORSHARP_* environment (see tensorsharp.config);
TENSORSHARP_RAY=auto and TENSORSHARP_REPLICAS=N would serve each model from N replicas on the Ray
cluster, but Ray's client cannot start in the gevent worker's monkey-patched process, so the app
refuses to (serve those with `tensorsharp serve --ray`).
"""
from tensorsharp.server.app import create_app

app = create_app()
