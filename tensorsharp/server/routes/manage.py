"""Ollama model management: /api/pull (from the store's registry), /api/push (refused: there is no
registry to push to), /api/delete, /api/copy, /api/create and the blobs it takes files from."""
from __future__ import annotations

from pathlib import Path

import gevent
from flask import Blueprint, Response, request

from tensorsharp import config, manifests, store
from tensorsharp.chat.template import ChatTemplate, TemplateError
from tensorsharp.errors import ModelStoreError
from tensorsharp.server.app import body, json_response, state
from tensorsharp.server.blobs import parse_digest
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


# Ollama pushes to a registry it can sign in to; the store here only reads a list of known models.
NO_PUSH = ("there is no registry to push {name} to: this server pulls from a read-only list of known models; "
           "copy its GGUF file to share it")


@bp.post("/api/push")
def push():
    """Answers as Ollama does for a push that fails: the first step's status, then the error
    (streamed), or the error alone with a 500 (stream false)."""
    name, stream = mf.parse_name(body())
    spec = state().find(name)   # an unknown model is a 404, before anything is streamed
    message = NO_PUSH.format(name=spec.name)
    if not stream:
        raise ApiError(500, message, code="push_unsupported")
    return ndjson_response(ndjson_line(e) for e in (mf.status("retrieving manifest"), {"error": message}))


@bp.route("/api/blobs/<digest>", methods=["HEAD"])
def blob_exists(digest: str):
    return Response(status=200 if state().blobs.path(parse_digest(digest)) is not None else 404)


@bp.post("/api/blobs/<digest>")
def blob_upload(digest: str):
    """201 when the body was stored under its digest, 200 when the blob was already here, 400
    when the body hashes to another digest. A GGUF file is far larger than any JSON body, so the
    body limit does not apply here."""
    hex_ = parse_digest(digest)
    blobs = state().blobs
    if blobs.path(hex_) is not None:
        return Response(status=200)
    request.max_content_length = None
    blobs.save(request.stream, hex_)
    return Response(status=201)


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
    if req.source.startswith("@sha256:") or (req.files and not req.source):
        base = Spec("", *_blob_file(req))
    elif mf.is_gguf_path(req.source) and st.catalog.find(req.source) is None:
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
    events = [mf.status("parsing GGUF" if req.files else "parsing modelfile"), mf.status(f"using existing layer sha256:{base.digest or 'local'}"),
              mf.status("writing manifest"), mf.status("success")]
    return ndjson_response(ndjson_line(e) for e in events)


def _blob_file(req: mf.Create) -> tuple[Path, frozenset, str]:
    """The uploaded GGUF a create names: FROM @sha256:... (a Modelfile after its blobs were
    uploaded), or the one GGUF among `files`."""
    if req.source:
        digests = {req.source[1:]: req.source[1:]}
    else:
        digests = {n: d for n, d in req.files.items() if n.lower().endswith(".gguf")}
        if len(digests) != 1:
            raise ApiError(400, f"'files' must hold exactly one .gguf file (got {len(digests)}); split models "
                           f"and projectors given as blobs are not supported", param="files")
    (name, digest), = digests.items()
    hex_ = parse_digest(digest)
    path = state().blobs.path(hex_)
    if path is None:
        raise ApiError(400, f"blob {digest} ({name}) was not uploaded: POST it to /api/blobs/{digest} first",
                       param="files")
    return _gguf_file(str(path)), frozenset(), hex_


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
