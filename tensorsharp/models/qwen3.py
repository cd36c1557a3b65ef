"""qwen3: Qwen3 dense — per-head RMSNorm on Q and K before RoPE, no biases."""
from tensorsharp.models.base import Architecture


class Qwen3(Architecture):
    name = "qwen3"
