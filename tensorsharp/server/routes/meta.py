"""Routes about the server itself: /health, /metrics, /api/version, and the web page at / ."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

from flask import Blueprint, Response, request, send_from_directory
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.routing import PathConverter
from werkzeug.security import safe_join

from tensorsharp import config
from tensorsharp.server.app import json_response, state
from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.openapi import document as openapi_document

bp = Blueprint("meta", __name__)


class PagePath(PathConverter):
    """A path of the web page's files: anything outside the API prefixes, so an unknown /api/ or
    /v1/ path is a 404 in its dialect rather than a page route's 405."""
    regex = r"(?!(?:api|v1)(?:/|$))[^/].*?"


@bp.get("/health")
def health():
    """200 while the engine serves; 503 once its thread died or a step has hung (a load balancer
    or supervisor should then restart the process)."""
    after = config.server_options().stall_seconds
    for entry in state().pool.loaded():
        problem = entry.served.scheduler.stalled(after)
        if problem is not None:
            return json_response({"status": "error", "error": f"{entry.name}: {problem}"}, 503)
    return json_response({"status": "ok"})


@bp.get("/metrics")
def metrics():
    return Response(state().metrics.text(), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Content-Type": CONTENT_TYPE_LATEST})


@bp.get("/openapi.json")
def openapi():
    # The loaded models' names: tools that generate requests from the document (schemathesis)
    # would otherwise load every model of the store in turn.
    return json_response(openapi_document([e.name for e in state().pool.loaded()]))


@bp.get("/api/version")
def version():
    try:
        v = metadata.version("tensorsharp")
    except metadata.PackageNotFoundError:
        v = "unknown"
    return json_response({"version": v})


def _root():
    root = state().web_root
    if root is None:
        raise ApiError(404, "the web UI is not installed with this server")
    return root


@bp.route("/", methods=["GET", "HEAD"])
def index():
    # Ollama clients check the server is up with GET or HEAD / and read a plain text answer;
    # browsers ask for HTML and get the page.
    if request.accept_mimetypes.best_match(["text/plain", "text/html"]) != "text/html":
        return Response("Ollama is running", mimetype="text/plain")
    return send_from_directory(_root(), "index.html")


@bp.route("/<page:name>", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
def static_file(name: str):
    root = _root()
    if request.method in ("GET", "HEAD"):
        return send_from_directory(root, name)
    path = safe_join(str(root), name)
    if path is None or not Path(path).is_file():
        raise ApiError(404, f"no such endpoint: {request.method} {request.path}")
    raise ApiError(405, f"method {request.method} is not allowed on {request.path}")
