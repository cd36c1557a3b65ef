"""The Flask app factory: the models served, their routes, API key check and JSON errors per dialect."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import gevent
from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from tensorsharp import config, store
from tensorsharp.errors import TensorSharpError
from tensorsharp.server import access
from tensorsharp.server.blobs import Blobs
from tensorsharp.server.bridge import GATHER
from tensorsharp.server.catalog import Catalog, Spec, file_spec
from tensorsharp.server.errors import ApiError
from tensorsharp.server.metrics import Metrics
from tensorsharp.server.model import ServedModel
from tensorsharp.server.pool import ModelPool, resident_bytes
from tensorsharp.server.protocol import duration
from tensorsharp.server.protocol.fields import parse_json
from tensorsharp.server.sessions import Sessions
from tensorsharp.server.uploads import Uploads

log = logging.getLogger(__name__)


# request.environ keys: the models a request holds, and the keep_alive it asked for.
LEASES = "tensorsharp.leases"
KEEP_ALIVE = "tensorsharp.keep_alive"
GROW = "tensorsharp.grow"   # pool.grow(served, bytes), for a request about to make its model hold more


@dataclass
class State:
    """What the routes share, kept in app.extensions["tensorsharp"]."""
    catalog: Catalog
    pool: ModelPool
    default: str   # the model of requests that name none (the web page's until it picks one)
    n_ctx: int     # the context models load with (0: their training context)
    sessions: Sessions
    uploads: Uploads
    access: access.Access
    web_root: Path | None
    blobs: Blobs
    draining: bool = False   # stopping: requests still arriving on open connections get 503
    gather: float = 0.0      # seconds within which a stream's tokens are written together (bridge.GATHER)
    metrics: Metrics = field(init=False)

    def __post_init__(self):
        self.metrics = Metrics(lambda: [e.served for e in self.pool.loaded()])

    def find(self, name: str) -> Spec:
        spec = self.catalog.find(name)
        if spec is None:
            names = [s.name for s in self.catalog.specs()]
            here = ", ".join(names[:10]) + (f" and {len(names) - 10} more (GET /api/tags)" if len(names) > 10 else "")
            raise ApiError(404, f"model '{name}' not found; models here: {here or 'none'} "
                           f"(POST /api/pull fetches a known one)", param="model", code="model_not_found")
        return spec

    def spec_named(self, name) -> Spec | None:
        """The catalog entry a request's "model" field names, or None (not a name, or unknown:
        the route's own lookup says so)."""
        return self.catalog.find(name) if isinstance(name, str) else None

    def require_model(self, name: str) -> ServedModel:
        """The model a request names, loaded if it is not, and held (never evicted) until the
        response has been sent."""
        spec = self.find(name)
        try:
            served = self.pool.acquire(spec)
        except TensorSharpError as e:   # a damaged or unsupported file: the client is told why
            raise ApiError(500, f"model {spec.name} could not be loaded: {e}", code="load_failed") from None
        request.environ.setdefault(LEASES, []).append(served)
        return served

    def listing(self) -> list[tuple]:
        """(spec, facts) of every model served; facts come from file headers (cached), read off the hub."""
        specs = self.catalog.specs()
        return list(zip(specs, gevent.get_hub().threadpool.apply(lambda: [self.catalog.facts(s) for s in specs])))

    @property
    def served(self) -> ServedModel:
        """The default model, loaded again if it was unloaded (for the startup line and tests)."""
        spec = self.find(self.default)
        loaded = self.pool.get(spec.name)
        if loaded is None:
            self.pool.release(loaded := self.pool.acquire(spec))
        return loaded

    def close(self) -> None:
        self.pool.close()

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


def create_app(model: str | ServedModel | list | None = None, *, n_ctx: int | None = None,
               n_threads: int | None = None, parallel: int | None = None, cache_slots: int | None = None,
               max_queue: int | None = None, api_key: str | None = None, max_body: int | None = None,
               upload_dir: Path | None = None, tool_format: str | None = None, mmproj: str | None = None,
               allowed_origins: str | None = None, allowed_hosts: str | None = None,
               max_loaded: int | None = None, max_memory: int | None = None,
               keep_alive: str | float | None = None, speculative: bool | None = None,
               ray: str | None = None, replicas: int | None = None, draft_model: str | None = None,
               draft_max: int | None = None, stream_interval_ms: int | None = None,
               kv_cache_type: str | None = None) -> Flask:
    """An app serving every model of the store, and `model` (a ServedModel, or a name or path to
    load, or a list of those; default: the configured model), which is loaded at once, stays
    loaded unless a request's keep_alive says otherwise, and is the default of requests that name
    none. Other models load on demand, at most max_loaded at once within max_memory bytes (0: no
    limit); each stays keep_alive (a duration) after its last request. mmproj: the projector for
    images (default: TENSORSHARP_MMPROJ, else one found beside the model); speculative: decoding
    verifies prompt-lookup guesses; ray: a Ray cluster ("auto", "local" or an address) on which
    `replicas` actors serve each model, this process routing to them; draft_model: a small model
    sharing the vocabulary of the models named here (not of those loaded on demand) that guesses
    up to draft_max tokens at a time for them; stream_interval_ms: a stream's tokens that come
    within this long of the last ones written go out together (0: each at once); kv_cache_type:
    how the models' KV caches store K and V (f16, q8_0 or q4_0). Unset options
    come from tensorsharp.config (the TENSORSHARP_* environment)."""
    load, opts = config.load_options(), config.server_options()
    models = model if isinstance(model, list) else [model or load.model]
    given = [m if isinstance(m, ServedModel) else store.resolve(m) for m in models]
    catalog = Catalog([m.path if isinstance(m, ServedModel) else m for m in given])
    load_kw = dict(n_ctx=load.n_ctx if n_ctx is None else n_ctx,
                   n_threads=load.n_threads if n_threads is None else n_threads,
                   parallel=parallel or opts.parallel, cache_slots=opts.cache_slots if cache_slots is None else cache_slots,
                   max_queue=opts.max_queue if max_queue is None else max_queue,
                   tool_format=tool_format or opts.tool_format, mmproj=mmproj or load.mmproj,
                   max_image_bytes=opts.max_image_bytes, max_image_pixels=opts.max_image_pixels,
                   speculative=opts.speculative if speculative is None else speculative,
                   kv_cache_type=config.kv_cache_type(kv_cache_type) if kv_cache_type else load.kv_cache_type)

    # The draft goes with the models named here: its vocabulary is checked against theirs when
    # they load (and load again after an unload), and the store's other models go without.
    drafted = {m.path if isinstance(m, ServedModel) else m for m in given}
    draft_kw = dict(draft_model=draft_model or load.draft_model, draft_max=draft_max or load.draft_max)

    def kw_of(spec: Spec) -> dict:
        return {**load_kw, **draft_kw} if spec.path in drafted else load_kw

    cluster = opts.ray if ray is None else ray
    if cluster:
        from tensorsharp.cluster.engine import connect, engine_for
        connect(cluster)

    def load_spec(spec: Spec) -> ServedModel:
        if cluster:
            engine = engine_for(spec, kw_of(spec), opts.replicas if replicas is None else replicas,
                                opts.stall_seconds)
            return ServedModel.load(str(spec.path), spec=spec, engine=engine, **kw_of(spec))
        return ServedModel.load(str(spec.path), spec=spec, **kw_of(spec))

    draft_spec = file_spec(store.resolve(draft_kw["draft_model"])) if draft_kw["draft_model"] else None

    def estimate(spec: Spec) -> int:
        facts, n_seq = catalog.facts(spec), load_kw["parallel"] + load_kw["cache_slots"]
        need = facts.memory_bytes(spec.file_size, load_kw["n_ctx"], n_seq, load_kw["kv_cache_type"])
        if draft_spec is not None and spec.path in drafted and load_kw["speculative"]:
            # Its file and a cache of the target's context for every slot (draft_model.DraftModel).
            n_ctx = min(load_kw["n_ctx"], facts.context_length) if load_kw["n_ctx"] > 0 else facts.context_length
            need += draft_spec.file_size + catalog.facts(draft_spec).kv_bytes_per_token * n_ctx * n_seq
        return need

    try:
        alive = duration.seconds(opts.keep_alive if keep_alive is None else keep_alive)
    except ValueError as e:
        raise TensorSharpError(f"keep-alive: {e}") from None
    # Imported before the pool measures the process without models, as the code serving requests.
    from tensorsharp.server.routes import embeddings, llamacpp, manage, meta, ollama, openai, responses, webui
    pool = ModelPool(load_spec, estimate, opts.max_loaded if max_loaded is None else max_loaded,
                     opts.max_memory if max_memory is None else max_memory, alive, resident_bytes)
    names = []
    for m in given:
        if isinstance(m, ServedModel):
            pool.adopt(m)
            names.append(m.name)
        else:
            spec = next(s for s in catalog.specs() if s.path == m)
            pool.pin(spec)
            names.append(spec.name)
    max_body = max_body or opts.max_body
    app = Flask("tensorsharp.server", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = max_body
    rules = access.Access((api_key if api_key is not None else opts.api_key) or None,
                          access.parse_list(allowed_origins if allowed_origins is not None else opts.allowed_origins),
                          access.parse_list(allowed_hosts if allowed_hosts is not None else opts.allowed_hosts))
    def stored(hex_: str) -> Path | None:
        return next((s.path for s in catalog.specs() if s.digest == hex_), None)
    app.extensions["tensorsharp"] = State(catalog, pool, names[0], load_kw["n_ctx"], Sessions(),
                                          Uploads(upload_dir or config.uploads_dir(), max_body), rules, web_root(),
                                          Blobs(config.blobs_dir(), stored),
                                          gather=(opts.stream_interval_ms if stream_interval_ms is None
                                                  else stream_interval_ms) / 1000)

    shared = app.extensions["tensorsharp"]   # for callbacks that run after the app context ends
    app.url_map.converters["page"] = meta.PagePath
    for bp in (manage.bp, meta.bp, llamacpp.bp, ollama.bp, openai.bp, embeddings.bp, responses.bp, webui.bp):
        app.register_blueprint(bp)

    @app.before_request
    def _access():
        # Generation reports each finished choice here (see Generation.events).
        request.environ["tensorsharp.metrics"] = state().metrics
        request.environ[GROW] = state().pool.grow
        request.environ[GATHER] = state().gather
        if state().draining and request.path != "/health":
            raise ApiError(503, "the server is shutting down", code="shutting_down", headers={"Retry-After": "5"})
        page = state().web_root is not None and request.endpoint in ("meta.index", "meta.static_file")
        return access.check(state().access, page)

    @app.after_request
    def _cors(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
        state().metrics.request(rule, request.method, response.status_code)
        return access.cors_headers(state().access, response)

    @app.after_request
    def _release(response: Response) -> Response:
        # The models a request held become idle once its body is made; a stream's, after its
        # last byte or when its client leaves.
        leases = request.environ.pop(LEASES, None)
        if leases:
            keep = request.environ.get(KEEP_ALIVE)

            def release():
                for served in leases:
                    shared.pool.release(served, keep)
            if response.is_streamed:
                response.call_on_close(release)
            else:
                release()
        return response

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
