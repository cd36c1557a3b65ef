"""Ollama model management: /api/pull (from the store's registry), /api/delete, /api/copy and /api/create."""
from __future__ import annotations

from pathlib import Path

import gevent
from flask import Blueprint, Response

from tensorsharp import config, manifests, store
from tensorsharp.chat.template import ChatTemplate, TemplateError
from tensorsharp.errors import ModelStoreError
from tensorsharp.server.app import body, json_response, state
from tensorsharp.server.catalog import Spec
from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol import modelfile as mf
from tensorsharp.server.streaming import ndjson_line, ndjson_response

bp = Blueprint("manage", __name__)

GGUF_MAGIC = b"GGUF"


def _store_error(e: ModelStoreError) -> ApiError:
    return ApiError(500, str(e), code="model_store_error")


@bp.post("/api/pull")
def pull():
    name, stream = mf.parse_name(body())
    try:
        model = store.lookup(manifests.key(name))
    except ModelStoreError as e:
        raise ApiError(404, str(e), param="model", code="model_not_found") from None
    done = [0]   # bytes so far, written by the pulling thread

    def arrived(n: int) -> None:
        done[0] = max(done[0], n)
    job = gevent.get_hub().threadpool.spawn(store.pull, model.name, False, None, arrived)
    if not stream:
        try:
            job.get()
        except ModelStoreError as e:
            raise _store_error(e) from None
        return json_response(mf.status("success"))
    return ndjson_response(_pull_events(model, job, done))


def _pull_events(model: store.Model, job, done: list):
    yield ndjson_line(mf.status("pulling manifest"))
    shown = -1
    while not job.ready():
        job.wait(0.5)
        if done[0] != shown:
            shown = done[0]
            yield ndjson_line(mf.pull_layer(model.sha256, model.size, shown))
    try:
        job.get()
    except ModelStoreError as e:
        yield ndjson_line({"error": str(e)})
        return
    yield ndjson_line(mf.pull_layer(model.sha256, model.size, model.size))
    for text in ("verifying sha256 digest", "writing manifest", "success"):
        yield ndjson_line(mf.status(text))


@bp.delete("/api/delete")
def delete():
    name, _ = mf.parse_name(body())
    st = state()
    spec = st.find(name)
    if spec.created:
        manifests.delete(spec.name)
    elif spec.path.parent != config.models_dir():
        raise ApiError(400, f"{spec.name} is the file {spec.path}, named when the server started, not a model "
                       f"of the store; it cannot be deleted here", param="model")
    else:
        try:
            store.delete(spec.path)
        except ModelStoreError as e:
            raise _store_error(e) from None
    st.pool.unload(spec.name)
    return Response(status=200)


@bp.post("/api/copy")
def copy():
    source, destination = mf.parse_copy(body())
    spec = state().find(source)
    _save(destination, spec.path, spec.system, spec.template, spec.parameters)
    return Response(status=200)


@bp.post("/api/create")
def create():
    req = mf.parse_create(body())
    st = state()
    if mf.is_gguf_path(req.source) and st.catalog.find(req.source) is None:
        base = Spec("", _gguf_file(req.source), frozenset())
    else:
        base = st.find(req.source)
    template = req.template or base.template
    if template is not None:
        try:
            ChatTemplate(template)
        except TemplateError as e:
            raise ApiError(400, f"'template' must be a Jinja chat template, as GGUF files carry (Ollama's Go "
                           f"templates are not supported): {e}", param="template") from None
    _save(req.model, base.path, req.system or base.system, template, {**base.parameters, **req.parameters})
    if not req.stream:
        return json_response(mf.status("success"))
    events = [mf.status("parsing modelfile"), mf.status(f"using existing layer sha256:{base.digest or 'local'}"),
              mf.status("writing manifest"), mf.status("success")]
    return ndjson_response(ndjson_line(e) for e in events)


def _gguf_file(text: str) -> Path:
    path = Path(text).expanduser()
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ApiError(400, f"cannot read {path}: {e.strerror}", param="from") from None
    if magic != GGUF_MAGIC:
        raise ApiError(400, f"{path} is not a GGUF file", param="from")
    return path.resolve()


def _save(name: str, path: Path, system: str | None, template: str | None, parameters: dict) -> None:
    try:
        name = manifests.check_name(name)
    except ModelStoreError as e:
        raise ApiError(400, str(e), param="model") from None
    taken = state().catalog.find(name)
    if taken is not None and not taken.created:
        raise ApiError(400, f"{name} is a model file of the store; choose another name", param="model")
    manifests.write(manifests.Manifest(name, path, system, template, parameters))
