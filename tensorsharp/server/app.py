"""The Flask app factory: one served model, its routes, API key check and JSON errors per dialect."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import gevent
from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from tensorsharp import config
from tensorsharp.server import access
from tensorsharp.server.errors import ApiError
from tensorsharp.server.model import ServedModel
from tensorsharp.server.protocol.fields import parse_json
from tensorsharp.server.sessions import Sessions
from tensorsharp.server.uploads import Uploads

log = logging.getLogger(__name__)


@dataclass
class State:
    """What the routes share, kept in app.extensions["tensorsharp"]."""
    served: ServedModel
    sessions: Sessions
    uploads: Uploads
    access: access.Access
    web_root: Path | None
    draining: bool = False   # stopping: requests still arriving on open connections get 503

    def require_model(self, name: str) -> ServedModel:
        if not self.served.matches(name):
            raise ApiError(404, f"model '{name}' not found; this server hosts {self.served.name}",
                           param="model", code="model_not_found")
        return self.served

    def require_generator(self, name: str, what: str) -> ServedModel:
        """The model, which must generate text: an embedding-only model is a 400, worded as Ollama does."""
        served = self.require_model(name)
        if not served.generates:
            raise ApiError(400, f'"{name}" does not support {what}', param="model")
        return served


def state() -> State:
    return current_app.extensions["tensorsharp"]


# Bodies above this are parsed on a worker thread: tens of megabytes take the hub ~50 ms.
PARSE_ON_HUB_BYTES = 1 << 20


def body() -> dict:
    """The request's JSON object (400 when it is not one)."""
    access.require_json_type()
    data = request.get_data(cache=True)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit is not None and len(data) >= limit:
        # A chunked body is cut at the limit without a word from werkzeug: refuse it whole.
        raise ApiError(413, f"request body is larger than the limit of {limit} bytes")
    if len(data) > PARSE_ON_HUB_BYTES:
        return gevent.get_hub().threadpool.apply(parse_json, (data,))
    return parse_json(data)


def json_response(obj, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(obj, ensure_ascii=False), status=status, headers=headers,
                    mimetype="application/json")


def error_response(err: ApiError) -> Response:
    request.environ["tensorsharp.error"] = err.message   # for the access log (server.run)
    payload = err.openai() if request.path.startswith("/v1/") else err.plain()
    return json_response(payload, err.status, err.headers)


def web_root() -> Path | None:
    """The web UI folder: TENSORSHARP_WEB_DIR, else the one packaged into tensorsharp/web, else the
    source checkout's web/ beside the package."""
    import tensorsharp
    package = Path(tensorsharp.__file__).parent
    roots = [config.web_dir(), package / "web"]
    if (package.parent / "pyproject.toml").is_file():
        roots.append(package.parent / "web")
    return next((r for r in roots if r is not None and (r / "index.html").is_file()), None)


def create_app(model: str | ServedModel | None = None, *, n_ctx: int | None = None, n_threads: int | None = None,
               parallel: int | None = None, cache_slots: int | None = None, max_queue: int | None = None,
               api_key: str | None = None, max_body: int | None = None, upload_dir: Path | None = None,
               tool_format: str | None = None, mmproj: str | None = None, allowed_origins: str | None = None,
               allowed_hosts: str | None = None) -> Flask:
    """An app serving `model` (a ServedModel, or a name or path to load; default: the configured
    model) with the projector mmproj for images (default: TENSORSHARP_MMPROJ, else one found beside
    the model). Unset options come from tensorsharp.config (the TENSORSHARP_* environment)."""
    load, opts = config.load_options(), config.server_options()
    if not isinstance(model, ServedModel):
        model = ServedModel.load(model or load.model, n_ctx=load.n_ctx if n_ctx is None else n_ctx,
                                 n_threads=load.n_threads if n_threads is None else n_threads,
                                 parallel=parallel or opts.parallel,
                                 cache_slots=opts.cache_slots if cache_slots is None else cache_slots,
                                 max_queue=opts.max_queue if max_queue is None else max_queue,
                                 tool_format=tool_format or opts.tool_format, mmproj=mmproj or load.mmproj,
                                 max_image_bytes=opts.max_image_bytes, max_image_pixels=opts.max_image_pixels)
    max_body = max_body or opts.max_body
    app = Flask("tensorsharp.server", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = max_body
    rules = access.Access((api_key if api_key is not None else opts.api_key) or None,
                          access.parse_list(allowed_origins if allowed_origins is not None else opts.allowed_origins),
                          access.parse_list(allowed_hosts if allowed_hosts is not None else opts.allowed_hosts))
    app.extensions["tensorsharp"] = State(model, Sessions(), Uploads(upload_dir or config.uploads_dir(), max_body),
                                          rules, web_root())

    from tensorsharp.server.routes import embeddings, meta, ollama, openai, webui
    for bp in (meta.bp, ollama.bp, openai.bp, embeddings.bp, webui.bp):
        app.register_blueprint(bp)

    @app.before_request
    def _access():
        if state().draining and request.path != "/health":
            raise ApiError(503, "the server is shutting down", code="shutting_down", headers={"Retry-After": "5"})
        page = state().web_root is not None and request.endpoint in ("meta.index", "meta.static_file")
        return access.check(state().access, page)

    @app.after_request
    def _cors(response: Response) -> Response:
        return access.cors_headers(state().access, response)

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        return error_response(err)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        messages = {404: f"no such endpoint: {request.method} {request.path}",
                    405: f"method {request.method} is not allowed on {request.path}",
                    413: f"request body is larger than the limit of {max_body} bytes"}
        return error_response(ApiError(err.code or 500, messages.get(err.code, err.description or err.name)))

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unhandled error")
        return error_response(ApiError(500, f"internal error: {type(err).__name__}: {err}"))

    return app
