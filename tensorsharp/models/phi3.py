"""phi3: Phi-3, 3.5 and 4-mini — fused QKV and gate/up, NeoX RoPE over part of each head, LongRoPE."""
from tensorsharp.models.base import Architecture


class Phi3(Architecture):
    name = "phi3"
    # llama.cpp keeps Phi-3's sliding window off (base layer_params: full attention everywhere),
    # and picks LongRoPE's long or short factors by the context (base rope_factors).
    fused_layer_tensors = {
        "attn_qkv.weight": (("attn_q.weight", "q"), ("attn_k.weight", "kv"), ("attn_v.weight", "kv")),
        "ffn_up.weight": (("ffn_gate.weight", "ff"), ("ffn_up.weight", "ff")),
    }
