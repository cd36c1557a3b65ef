"""llama: Llama 2/3.x, SmolLM2, Mistral — RMSNorm, SwiGLU, RoPE on interleaved pairs (Llama 3's
rope_freqs factors apply through the shared base)."""
from tensorsharp.models.base import Architecture


class Llama(Architecture):
    name = "llama"
    # llama.cpp's converter permutes Q/K rows so that the interleaved-pair rotation applies.
    rope_neox = False
