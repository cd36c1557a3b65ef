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
    problem = state().served.scheduler.stalled(config.server_options().stall_seconds)
    if problem is not None:
        return json_response({"status": "error", "error": problem}, 503)
    return json_response({"status": "ok"})


@bp.get("/metrics")
def metrics():
    return Response(state().metrics.text(), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Content-Type": CONTENT_TYPE_LATEST})


@bp.get("/openapi.json")
def openapi():
    return json_response(openapi_document([state().served.name]))


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


@bp.get("/")
def index():
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
