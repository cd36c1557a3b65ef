"""gemma2: scaled embeddings, pre+post norms, GeGLU, attention and final logit soft-capping,
sliding-window layers alternating with global ones."""
import math

from tensorsharp.models.base import FFN_GELU, Architecture, HParams, LayerParams

# Unless the file says otherwise (llama.cpp's defaults for gemma2): even layers slide over 4096
# positions, odd layers see everything.
SWA_PATTERN = 2
SLIDING_WINDOW = 4096


class Gemma2(Architecture):
    name = "gemma2"
    ffn_act = FFN_GELU
    required_layer_tensors = Architecture.required_layer_tensors + ("post_attention_norm.weight",
                                                                    "post_ffw_norm.weight")

    def hparams(self, n_vocab: int) -> HParams:
        hp = super().hparams(n_vocab)
        hp.embd_scale = math.sqrt(hp.n_embd)
        # llama.cpp scales queries by 1/sqrt(head_dim), except the 46-layer 27B model which scales
        # by 1/sqrt(n_embd/n_head); neither reads query_pre_attn_scalar.
        hp.attn_scale = 1.0 / math.sqrt(hp.n_embd / hp.n_head if hp.n_layer == 46 else hp.head_dim)
        hp.attn_softcap = float(self.md.get(f"{self.name}.attn_logit_softcapping", 0.0) or 0.0)
        hp.final_softcap = float(self.md.get(f"{self.name}.final_logit_softcapping", 0.0) or 0.0)
        hp.sliding_window = int(self.md.get(f"{self.name}.attention.sliding_window", SLIDING_WINDOW))
        return hp

    def layer_params(self, hp: HParams, layer: int) -> LayerParams:
        pattern = self.md.get(f"{self.name}.attention.sliding_window_pattern", SWA_PATTERN)
        if isinstance(pattern, (int, float)):
            sliding = int(pattern) > 0 and layer % int(pattern) < int(pattern) - 1
        else:  # one flag per layer
            sliding = layer < len(pattern) and bool(pattern[layer])
        lp = super().layer_params(hp, layer)
        if not sliding:
            return lp
        base = float(self.md.get(f"{self.name}.rope.freq_base_swa", hp.rope_base))
        return lp._replace(rope_base=base, window=hp.sliding_window)
