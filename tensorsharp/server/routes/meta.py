"""Routes about the server itself: /health, /api/version, and the web page at / ."""
from __future__ import annotations

from importlib import metadata

from flask import Blueprint, send_from_directory

from tensorsharp import config
from tensorsharp.server.app import json_response, state
from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.openapi import document as openapi_document

bp = Blueprint("meta", __name__)


@bp.get("/health")
def health():
    """200 while the engine serves; 503 once its thread died or a step has hung (a load balancer
    or supervisor should then restart the process)."""
    problem = state().served.scheduler.stalled(config.server_options().stall_seconds)
    if problem is not None:
        return json_response({"status": "error", "error": problem}, 503)
    return json_response({"status": "ok"})


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


@bp.get("/<path:name>")
def static_file(name: str):
    return send_from_directory(_root(), name)
