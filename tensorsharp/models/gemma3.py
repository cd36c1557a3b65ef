"""gemma3: scaled embeddings, pre+post norms, GeGLU, Q/K norm, sliding-window layers."""
import math

from tensorsharp.models.base import FFN_GELU, Architecture, HParams, LayerParams

# Unless the file says otherwise: five sliding-window layers, then one global layer; local
# layers rotate with their own base (llama.cpp's defaults for gemma3).
SWA_PATTERN = 6
LOCAL_ROPE_BASE = 10000.0


class Gemma3(Architecture):
    name = "gemma3"
    ffn_act = FFN_GELU

    def hparams(self, n_vocab: int) -> HParams:
        hp = super().hparams(n_vocab)
        hp.embd_scale = math.sqrt(hp.n_embd)
        hp.attn_scale = 1.0 / math.sqrt(hp.head_dim)
        hp.final_softcap = float(self.md.get(f"{self.name}.final_logit_softcapping", 0.0) or 0.0)
        return hp

    def layer_params(self, hp: HParams, layer: int) -> LayerParams:
        pattern = self.md.get(f"{self.name}.attention.sliding_window_pattern", SWA_PATTERN)
        if isinstance(pattern, (int, float)):
            pattern = int(pattern)
            sliding = pattern > 0 and layer % pattern < pattern - 1
        else:  # one flag per layer
            sliding = layer < len(pattern) and bool(pattern[layer])
        if hp.sliding_window and sliding:
            base = float(self.md.get(f"{self.name}.rope.freq_base_swa", LOCAL_ROPE_BASE))
            return LayerParams(base, 1.0, hp.sliding_window, hp.rope_mscale)
        return super().layer_params(hp, layer)
