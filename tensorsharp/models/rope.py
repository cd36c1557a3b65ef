"""RoPE scalings settled at load time: YaRN as per-pair frequency factors and a cos/sin scale."""
from __future__ import annotations

import math

import numpy as np

# llama.cpp reads no YaRN betas or extrapolation factor for these families: its defaults hold.
YARN_BETA_FAST, YARN_BETA_SLOW = 32.0, 1.0


def _corr_dim(n_rot: int, n_ctx_orig: int, n_turns: float, base: float) -> float:
    """The pair index whose wavelength fits n_turns times into the original context."""
    return n_rot * math.log(n_ctx_orig / (n_turns * 2 * math.pi)) / (2 * math.log(base))


def yarn(n_rot: int, n_ctx_orig: int, base: float, scale: float, factors: np.ndarray | None):
    """YaRN as ggml's rope applies it (extrapolation factor 1): pairs below the fast correction
    dim keep their frequency, pairs above the slow one are interpolated by `scale`, a linear ramp
    between; cos and sin grow by 1 + 0.1 ln(1/scale). Returns (frequency divisors (n_rot/2)
    including `factors`, mscale); the layer then rotates with scale 1."""
    lo = max(0.0, math.floor(_corr_dim(n_rot, n_ctx_orig, YARN_BETA_FAST, base)))
    hi = min(n_rot - 1.0, math.ceil(_corr_dim(n_rot, n_ctx_orig, YARN_BETA_SLOW, base)))
    i = np.arange(n_rot // 2, dtype=np.float64)
    ramp = 1.0 - np.clip((i - lo) / max(0.001, hi - lo), 0.0, 1.0)  # 1: keep, 0: interpolate
    divisors = 1.0 / (scale * (1.0 - ramp) + ramp)
    if factors is not None:
        divisors = divisors * factors
    return divisors.astype(np.float32), 1.0 + 0.1 * math.log(1.0 / scale)
