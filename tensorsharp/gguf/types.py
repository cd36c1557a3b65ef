"""GGML tensor types as stored in GGUF: id, name, elements per block, bytes per block."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorType:
    id: int
    name: str
    block_size: int  # elements per block
    type_size: int   # bytes per block

    def row_bytes(self, n: int) -> int:
        """Bytes of n elements; n must be a whole number of blocks."""
        if n % self.block_size:
            raise ValueError(f"{n} elements is not a whole number of {self.name} blocks of {self.block_size}")
        return n // self.block_size * self.type_size


_TYPES = [
    (0, "F32", 1, 4), (1, "F16", 1, 2), (2, "Q4_0", 32, 18), (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22), (7, "Q5_1", 32, 24), (8, "Q8_0", 32, 34), (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84), (11, "Q3_K", 256, 110), (12, "Q4_K", 256, 144), (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210), (15, "Q8_K", 256, 292), (16, "IQ2_XXS", 256, 66), (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98), (19, "IQ1_S", 256, 50), (20, "IQ4_NL", 32, 18), (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82), (23, "IQ4_XS", 256, 136), (24, "I8", 1, 1), (25, "I16", 1, 2),
    (26, "I32", 1, 4), (27, "I64", 1, 8), (28, "F64", 1, 8), (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2), (34, "TQ1_0", 256, 54), (35, "TQ2_0", 256, 66), (39, "MXFP4", 32, 17),
]

TYPES_BY_ID: dict[int, TensorType] = {t[0]: TensorType(*t) for t in _TYPES}
TYPES_BY_NAME: dict[str, TensorType] = {t.name: t for t in TYPES_BY_ID.values()}


def tensor_type(key: int | str) -> TensorType:
    """Look a type up by GGML id or name; KeyError names the unknown key."""
    table = TYPES_BY_NAME if isinstance(key, str) else TYPES_BY_ID
    try:
        return table[key]
    except KeyError:
        raise KeyError(f"unknown GGML tensor type {key!r}") from None
