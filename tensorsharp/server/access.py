"""Who may call the server: the API key, and which web pages and host names may reach it.

A server on a laptop's loopback is reachable by every page the laptop's browser opens. Browsers
send a cross-site POST with a text/plain body without asking first, and DNS rebinding lets a
page read answers from a name that resolves to 127.0.0.1. So, by default:
- a request whose Origin is not this server's own is refused (403) unless the origin is allowed
  (then it gets CORS headers, and its preflights are answered);
- over a loopback connection, the Host must be a loopback name or address, or an allowed host;
- a JSON body a browser sends (Origin or Sec-Fetch-Mode headers) must be declared JSON, which no
  page can do across sites without a preflight.
Clients that are not browsers (curl, the SDKs) send none of these headers and are unaffected.
"""
from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from flask import Response, request

from tensorsharp.server.errors import ApiError

CORS_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type"
CORS_MAX_AGE = "600"
_LOOPBACK_NAMES = {"localhost"}


@dataclass(frozen=True)
class Access:
    api_key: str | None
    allowed_origins: frozenset[str]   # "scheme://host[:port]" as browsers send it; "*": any
    allowed_hosts: frozenset[str]     # host names (no port); "*": any

    def origin_allowed(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin.rstrip("/").lower() in self.allowed_origins


def parse_list(raw: str | None) -> frozenset[str]:
    """A comma-separated setting as a set of lower-case entries (origins without a trailing /)."""
    if not raw:
        return frozenset()
    return frozenset(item.strip().rstrip("/").lower() for item in raw.split(",") if item.strip())


def _is_loopback(address: str) -> bool:
    host = address.strip("[]").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_address() -> str | None:
    """The address the client's connection arrived at, where the WSGI server exposes its socket."""
    sock = request.environ.get("tensorsharp.socket") or request.environ.get("gunicorn.socket")
    try:
        return sock.getsockname()[0] if sock is not None else None
    except (OSError, IndexError, TypeError):
        return None


def _host_name(host_header: str) -> str:
    """The name part of a Host header ("[::1]:5000" -> "::1", "localhost:5000" -> "localhost")."""
    if host_header.startswith("["):
        return host_header[1:host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _own_origin() -> str:
    return f"{request.scheme}://{request.host}".lower()


def check(access: Access, page_endpoint: bool) -> Response | None:
    """Runs before every request: a refusal to send instead of the route, or None to go on."""
    _check_host(access)
    origin = request.headers.get("Origin")
    if origin is None and request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
        origin = "(a page on another site)"   # a browser that left Origin out still says where from
    cross = origin is not None and origin.rstrip("/").lower() != _own_origin()
    if cross and not access.origin_allowed(origin):
        raise ApiError(403, f"requests from origin {origin} are not allowed; start the server with "
                       f"--allowed-origins {origin} (or TENSORSHARP_ALLOWED_ORIGINS) to allow them",
                       code="origin_not_allowed")
    if request.method == "OPTIONS":
        return Response(status=204, headers={"Allow": CORS_METHODS})   # preflights carry no key
    if access.api_key is None or request.path == "/health":
        return None
    # The page's own files hold no data and a browser cannot attach a key to loading them; the
    # page sends the key with its API calls.
    if request.method in ("GET", "HEAD") and page_endpoint:
        return None
    sent = request.headers.get("Authorization", "")
    scheme, _, token = sent.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), access.api_key.encode()):
        return None
    message = "invalid API key" if sent else "missing API key: send 'Authorization: Bearer <key>'"
    raise ApiError(401, message, code="invalid_api_key")


def _check_host(access: Access) -> None:
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 reaches us with
    Host: evil.example. Connections that arrive on a non-loopback address were opened to a
    server its operator exposed, so any name is theirs to use there."""
    local = _local_address()
    if "*" in access.allowed_hosts or (local is not None and not _is_loopback(local)):
        return
    name = _host_name(request.host).lower()
    if _is_loopback(name) or name in access.allowed_hosts:
        return
    raise ApiError(403, f"host name {name!r} is not allowed for this server; start it with --allowed-hosts "
                   f"{name} (or TENSORSHARP_ALLOWED_HOSTS) if you reach it under that name",
                   code="host_not_allowed")


def require_json_type() -> None:
    """A JSON body a browser sent must be declared JSON: text/plain and form bodies are what a
    page may send anywhere without a preflight. Other clients may send curl's default type."""
    from_page = "Origin" in request.headers or "Sec-Fetch-Mode" in request.headers
    if from_page and request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise ApiError(415, f"a request from a web page must send 'Content-Type: application/json', "
                       f"not {request.mimetype or 'none'!r}", code="unsupported_media_type")


def cors_headers(access: Access, response: Response) -> Response:
    """Lets an allowed cross-origin page read the response (and its preflight pass)."""
    origin = request.headers.get("Origin")
    if origin is None or origin.rstrip("/").lower() == _own_origin() or not access.origin_allowed(origin):
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
    return response
