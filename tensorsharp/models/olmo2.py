"""olmo2: OLMo 2 and 3 — no pre-norms, RMSNorm on each block's output, Q/K norms over all heads'
rows; OLMo 3 adds sliding-window layers."""
from tensorsharp.models.base import Architecture, HParams, LayerParams

# llama.cpp's default when a file has a window but no pattern: three sliding layers, one global.
SWA_PATTERN = 4


class Olmo2(Architecture):
    name = "olmo2"
    required_layer_tensors = ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_q_norm.weight",
                              "attn_k_norm.weight", "attn_output.weight", "post_attention_norm.weight",
                              "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight", "post_ffw_norm.weight")

    def hparams(self, n_vocab: int) -> HParams:
        hp = super().hparams(n_vocab)
        hp.qk_norm_whole = True
        return hp

    def layer_params(self, hp: HParams, layer: int) -> LayerParams:
        lp = super().layer_params(hp, layer)
        if not hp.sliding_window:
            return lp
        pattern = self.md.get(f"{self.name}.attention.sliding_window_pattern", SWA_PATTERN)
        if isinstance(pattern, (int, float)):
            sliding = int(pattern) > 0 and layer % int(pattern) < int(pattern) - 1
        else:  # one flag per layer
            sliding = layer < len(pattern) and bool(pattern[layer])
        if not sliding:
            return lp
        # Sliding layers rotate unscaled (llama.cpp: freq_scale and attention factor 1).
        base = float(self.md.get(f"{self.name}.rope.freq_base_swa", hp.rope_base))
        return LayerParams(base, 1.0, hp.sliding_window)
