"""GGUF files: a bounds-checked reader over mmap and the tensor type table."""
from tensorsharp.errors import GGUFError
from tensorsharp.gguf.constants import GGUFValueType
from tensorsharp.gguf.reader import GGUFFile, TensorInfo
from tensorsharp.gguf.types import TYPES_BY_ID, TYPES_BY_NAME, TensorType, tensor_type

__all__ = ["GGUFError", "GGUFFile", "GGUFValueType", "TensorInfo", "TensorType",
           "TYPES_BY_ID", "TYPES_BY_NAME", "tensor_type"]
