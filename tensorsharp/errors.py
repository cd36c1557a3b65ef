"""Exception types shared across the package."""


class TensorSharpError(Exception):
    """Base of every error tensorsharp raises on purpose."""


class GGUFError(TensorSharpError):
    """A GGUF file is malformed, truncated or uses something we cannot read."""


class ModelStoreError(TensorSharpError):
    """A model could not be found, fetched or verified."""


class ContextFullError(TensorSharpError):
    """A sequence would grow past the KV cache's context size."""
