"""GGUF container constants: magic, versions, metadata value types, limits we enforce."""
from __future__ import annotations

import struct
from enum import IntEnum

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)  # v2 and v3 share one little-endian layout; v3 only added big-endian files
HEADER_SIZE = 24             # magic, u32 version, u64 n_tensors, u64 n_kv

KEY_ALIGNMENT = "general.alignment"
KEY_ARCHITECTURE = "general.architecture"
DEFAULT_ALIGNMENT = 32
MAX_ALIGNMENT = 1 << 20      # real files use 32..4096; anything larger is corruption, not a layout choice

GGML_MAX_DIMS = 4
MAX_ARRAY_DEPTH = 8          # arrays of arrays; bounds recursion on hostile input
INT64_MAX = (1 << 63) - 1    # ggml counts elements in int64_t


class GGUFValueType(IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# Fixed-size value types: struct format and numpy dtype, both little-endian.
SCALAR_FORMATS: dict[GGUFValueType, tuple[str, str]] = {
    GGUFValueType.UINT8: ("<B", "<u1"), GGUFValueType.INT8: ("<b", "<i1"),
    GGUFValueType.UINT16: ("<H", "<u2"), GGUFValueType.INT16: ("<h", "<i2"),
    GGUFValueType.UINT32: ("<I", "<u4"), GGUFValueType.INT32: ("<i", "<i4"),
    GGUFValueType.FLOAT32: ("<f", "<f4"), GGUFValueType.BOOL: ("<B", "<u1"),
    GGUFValueType.UINT64: ("<Q", "<u8"), GGUFValueType.INT64: ("<q", "<i8"),
    GGUFValueType.FLOAT64: ("<d", "<f8"),
}

# Fewest bytes one value of each type can occupy: a string is at least its u64 length,
# an array at least its u32 element type and u64 count. Bounds every claimed count.
MIN_VALUE_SIZE: dict[GGUFValueType, int] = {
    **{t: struct.calcsize(fmt) for t, (fmt, _) in SCALAR_FORMATS.items()},
    GGUFValueType.STRING: 8,
    GGUFValueType.ARRAY: 12,
}
