"""gemma3: scaled embeddings, pre+post norms, GeGLU, Q/K norm, sliding-window layers."""
import math

from tensorsharp.models.base import FFN_GELU, Architecture, HParams

# Five sliding-window layers, then one global layer; local layers rotate with their own base.
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

    def layer_params(self, hp: HParams, layer: int) -> tuple[float, float, int]:
        if hp.sliding_window and layer % SWA_PATTERN < SWA_PATTERN - 1:
            return LOCAL_ROPE_BASE, 1.0, hp.sliding_window
        return hp.rope_base, hp.rope_scale, 0
