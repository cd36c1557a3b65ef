"""nomic-bert: bert with a fused QKV, RoPE (neox) instead of learned positions and a SwiGLU FFN."""
from tensorsharp.models.encoder import FFN_SWIGLU, EncoderArchitecture


class NomicBert(EncoderArchitecture):
    name = "nomic-bert"
    ffn = FFN_SWIGLU
    learned_positions = False
