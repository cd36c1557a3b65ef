"""The Flask app factory: one served model, its routes, API key check and JSON errors per dialect."""
from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from tensorsharp import config
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
    api_key: str | None
    web_root: Path | None

    def require_model(self, name: str) -> ServedModel:
        if not self.served.matches(name):
            raise ApiError(404, f"model '{name}' not found; this server hosts {self.served.name}",
                           param="model", code="model_not_found")
        return self.served


def state() -> State:
    return current_app.extensions["tensorsharp"]


def body() -> dict:
    """The request's JSON object (400 when it is not one)."""
    return parse_json(request.get_data(cache=True))


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


def _check_key() -> Response | None:
    key = state().api_key
    if key is None or request.path == "/health":
        return None
    root = state().web_root
    # The page's own files hold no data and a browser cannot attach a key to loading them; the
    # page sends the key with its API calls.
    if request.method == "GET" and root is not None and request.endpoint in ("meta.index", "meta.static_file"):
        return None
    sent = request.headers.get("Authorization", "")
    scheme, _, token = sent.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode()):
        return None
    message = "invalid API key" if sent else "missing API key: send 'Authorization: Bearer <key>'"
    return error_response(ApiError(401, message, code="invalid_api_key"))


def create_app(model: str | ServedModel | None = None, *, n_ctx: int | None = None, n_threads: int | None = None,
               parallel: int | None = None, cache_slots: int | None = None, max_queue: int | None = None,
               api_key: str | None = None, max_body: int | None = None, upload_dir: Path | None = None,
               tool_format: str | None = None, mmproj: str | None = None) -> Flask:
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
    app.extensions["tensorsharp"] = State(model, Sessions(), Uploads(upload_dir or config.uploads_dir(), max_body),
                                          api_key if api_key is not None else opts.api_key, web_root())

    from tensorsharp.server.routes import meta, ollama, openai, webui
    for bp in (meta.bp, ollama.bp, openai.bp, webui.bp):
        app.register_blueprint(bp)
    app.before_request(_check_key)

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
