"""qwen2: Qwen2 / Qwen2.5 — Q/K/V biases, NeoX RoPE, untied output."""
from tensorsharp.models.base import Architecture


class Qwen2(Architecture):
    name = "qwen2"
