"""HTTP errors: one exception type, the mapping from engine errors, and each dialect's JSON body."""
from __future__ import annotations

from tensorsharp.chat.schema import OutputValidationError, SchemaError
from tensorsharp.engine.constraint import ConstraintError
from tensorsharp.engine.request import EngineUnavailableError, QueueFullError
from tensorsharp.errors import ContextFullError, TensorSharpError

RETRY_AFTER_S = 2   # what a 503 for a full queue tells clients to wait

_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
                 413: "invalid_request_error", 422: "invalid_request_error", 501: "not_implemented_error",
                 503: "server_error"}


class ApiError(TensorSharpError):
    """Answered as `status` with a JSON body in the client's dialect (or an error chunk mid-stream)."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def openai(self) -> dict:
        return {"error": {"message": self.message, "type": _OPENAI_TYPES.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}

    def plain(self) -> dict:
        """Ollama's and the web UI's shape."""
        return {"error": self.message}


def from_engine(error: Exception) -> ApiError:
    """The HTTP face of an error the engine or scheduler raised or reported."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, QueueFullError):
        return ApiError(503, f"server busy: {error}; retry later", code="queue_full",
                        headers={"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(error, EngineUnavailableError):
        return ApiError(503, str(error), code="engine_unavailable", headers={"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(error, OutputValidationError):
        return ApiError(422, f"the output does not follow the requested format: {error}", code="invalid_output")
    if isinstance(error, SchemaError):
        return ApiError(400, f"invalid schema: {error}", param="response_format", code="invalid_schema")
    if isinstance(error, ConstraintError):
        return ApiError(400, str(error), param="tool_choice")
    if isinstance(error, ContextFullError):
        return ApiError(400, str(error), param="messages", code="context_length_exceeded")
    if isinstance(error, ValueError):
        return ApiError(400, str(error))
    return ApiError(500, f"generation failed: {error}")
