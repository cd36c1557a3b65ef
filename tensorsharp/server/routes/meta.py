"""Routes about the server itself: /health, /api/version, and the web page at / ."""
from __future__ import annotations

from importlib import metadata

from flask import Blueprint, Response, request, send_from_directory

from tensorsharp import config
from tensorsharp.server.app import json_response, state
from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.openapi import document as openapi_document

bp = Blueprint("meta", __name__)


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


@bp.get("/<path:name>")
def static_file(name: str):
    return send_from_directory(_root(), name)
