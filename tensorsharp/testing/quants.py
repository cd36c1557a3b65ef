"""Random GGUF blocks with sane scales, and numpy oracles of the activation quantization."""
from __future__ import annotations

import numpy as np

from tensorsharp.gguf.types import tensor_type
from tensorsharp.kernels import ACT_F32, ACT_Q8K, ACT_Q8X32

# Byte offsets of the f16 scale fields inside one block (csrc/include/ts/types.h).
_F16_FIELDS = {
    "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,), "IQ4_NL": (0,),
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,), "IQ4_XS": (0,),
    "IQ2_XXS": (0,), "IQ2_XS": (0,), "IQ2_S": (0,), "IQ3_XXS": (0,), "IQ3_S": (0,), "IQ1_S": (0,),
}
# Byte offsets of E8M0 scales (powers of two; MXFP4).
_E8M0_FIELDS = {"MXFP4": (0,)}
# IQ1_M has no f16 field: the top nibbles of the four uint16 words at this offset hold its bits.
IQ1_M_SCALES = 48

ACT_OF = {"F32": ACT_F32, "F16": ACT_F32, "BF16": ACT_F32,
          "Q4_0": ACT_Q8X32, "Q4_1": ACT_Q8X32, "Q5_0": ACT_Q8X32, "Q5_1": ACT_Q8X32,
          "Q8_0": ACT_Q8X32, "IQ4_NL": ACT_Q8X32, "MXFP4": ACT_Q8X32,
          "Q2_K": ACT_Q8K, "Q3_K": ACT_Q8K, "Q4_K": ACT_Q8K, "Q5_K": ACT_Q8K, "Q6_K": ACT_Q8K,
          "IQ4_XS": ACT_Q8K, "IQ2_XXS": ACT_Q8K, "IQ2_XS": ACT_Q8K, "IQ2_S": ACT_Q8K, "IQ3_XXS": ACT_Q8K,
          "IQ3_S": ACT_Q8K, "IQ1_S": ACT_Q8K, "IQ1_M": ACT_Q8K}


def random_weights(type_name: str, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """(rows, row_bytes) uint8: random quants, finite scales of a realistic magnitude."""
    if type_name == "F32":
        return rng.standard_normal((rows, cols), dtype=np.float32).view(np.uint8)
    if type_name == "F16":
        return rng.standard_normal((rows, cols)).astype(np.float16).view(np.uint8)
    if type_name == "BF16":
        bits = rng.standard_normal((rows, cols)).astype(np.float32).view(np.uint32) >> 16
        return bits.astype(np.uint16).view(np.uint8)
    t = tensor_type(type_name)
    nb = cols // t.block_size
    raw = rng.integers(0, 256, size=(rows, nb, t.type_size), dtype=np.uint8)
    for off in _E8M0_FIELDS.get(type_name, ()):  # 2^-9 .. 2^-4, halved as ggml stores them
        raw[:, :, off] = rng.integers(118, 124, size=(rows, nb), dtype=np.uint8)
    for off in _F16_FIELDS.get(type_name, ()):
        scale = (rng.uniform(0.5, 2.0, size=(rows, nb)) * 2.0 ** -6).astype(np.float16)
        raw[:, :, off:off + 2] = scale.view(np.uint8).reshape(rows, nb, 2)
    if type_name == "IQ1_M":
        set_iq1_m_scale(raw, (rng.uniform(0.5, 2.0, size=(rows, nb)) * 2.0 ** -6).astype(np.float16))
    return raw.reshape(rows, nb * t.type_size)


def set_iq1_m_scale(blocks: np.ndarray, d: np.ndarray) -> None:
    """Store f16 d (shape blocks.shape[:-1]) in IQ1_M blocks (..., 56) uint8: nibble k of d's bits
    is the top nibble of scale word k; the 3-bit sub-block scales below are kept."""
    words = blocks[..., IQ1_M_SCALES:IQ1_M_SCALES + 8].copy().view(np.uint16)
    bits = d.astype(np.float16).view(np.uint16)[..., None]
    nibbles = (bits >> np.array([0, 4, 8, 12], dtype=np.uint16)) & np.uint16(0x0F)
    words = (words & np.uint16(0x0FFF)) | (nibbles << np.uint16(12))
    blocks[..., IQ1_M_SCALES:IQ1_M_SCALES + 8] = words.view(np.uint8)


def f16_round(a: np.ndarray) -> np.ndarray:
    """Float32 values rounded to half precision where a half holds them as a normal number
    (as the kernels store q8x32 scales); the rest unchanged."""
    a = np.asarray(a, dtype=np.float32)
    normal = (np.abs(a) >= np.float32(2.0 ** -14)) & (np.abs(a) <= np.float32(65504))
    with np.errstate(over="ignore"):
        return np.where(normal, a.astype(np.float16).astype(np.float32), a)


def quantize_act_ref(x: np.ndarray, act: int) -> np.ndarray:
    """What the kernels' activation quantizer computes, returned dequantized (float64).

    Symmetric 8-bit with d = max|x| / 127 per block of 32 (q8x32) or 256 (q8k), the quants x / d
    rounded half to even; q8x32 stores d rounded by f16_round (the quants use the unrounded d)."""
    x = np.asarray(x, dtype=np.float32)
    if act == ACT_F32:
        return x.astype(np.float64)
    bs = 32 if act == ACT_Q8X32 else 256
    blocks = x.reshape(*x.shape[:-1], -1, bs)
    amax = np.abs(blocks).max(axis=-1, keepdims=True)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(d > 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.clip(np.rint(blocks * inv), -127, 127)
    if act == ACT_Q8X32:
        d = f16_round(d)
    return (q * d.astype(np.float64)).reshape(x.shape)


def matmul_ref(w_deq: np.ndarray, x: np.ndarray, act: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact product the kernels approximate, and a per-output scale for tolerances.

    w_deq (rows, cols) dequantized weights; x (n, cols). Returns y (n, rows) and
    |x_q| @ |W|^T, the magnitude against which float rounding is measured."""
    xq = quantize_act_ref(x, act)
    w = w_deq.astype(np.float64)
    return xq @ w.T, np.abs(xq) @ np.abs(w).T
