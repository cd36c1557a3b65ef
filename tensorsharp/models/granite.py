"""granite: Llama layout with embedding, attention, residual and logit multipliers."""
from tensorsharp.models.base import Architecture, HParams


class Granite(Architecture):
    name = "granite"
    rope_neox = False  # the converter permutes Q/K rows as for llama

    def hparams(self, n_vocab: int) -> HParams:
        hp = super().hparams(n_vocab)
        hp.embd_scale = float(self.md.get(f"{self.name}.embedding_scale", 1.0) or 1.0)
        hp.attn_scale = float(self.md.get(f"{self.name}.attention.scale", 0.0) or 0.0)
        hp.residual_scale = float(self.md.get(f"{self.name}.residual_scale", 1.0) or 1.0)
        hp.logit_scale = float(self.key("logit_scale"))
        return hp
