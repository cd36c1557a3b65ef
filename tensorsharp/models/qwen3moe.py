"""qwen3moe: Qwen3-MoE (Qwen3-30B-A3B, 235B-A22B) — Qwen3's attention with per-head Q/K norms, and
in every layer a routed FFN: a softmax router picks the top-k experts of a token, their weights
renormalised, no shared expert."""
from tensorsharp.errors import GGUFError
from tensorsharp.models.base import Architecture, HParams


class Qwen3Moe(Architecture):
    name = "qwen3moe"
    required_layer_tensors = ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                              "attn_q_norm.weight", "attn_k_norm.weight", "attn_output.weight", "ffn_norm.weight",
                              "ffn_gate_inp.weight", "ffn_gate_exps.weight", "ffn_up_exps.weight",
                              "ffn_down_exps.weight")

    # llama.cpp renormalises Qwen3-MoE's top-k weights (HF norm_topk_prob, true in every released
    # model) whether or not the converter wrote the key, which it does not.
    default_expert_norm = True

    def key(self, suffix: str, default=None):
        # The dense width only sizes buffers no layer uses, so a file without one loses nothing.
        if suffix == "feed_forward_length" and default is None:
            default = self.md.get(f"{self.name}.expert_feed_forward_length")
        return super().key(suffix, default)

    def hparams(self, n_vocab: int) -> HParams:
        hp = super().hparams(n_vocab)
        hp.n_expert, hp.n_expert_used = int(self.key("expert_count")), int(self.key("expert_used_count"))
        hp.n_ff_exp = int(self.key("expert_feed_forward_length"))
        if not 0 < hp.n_expert_used <= hp.n_expert:
            raise GGUFError(f"{self.name} model uses {hp.n_expert_used} of {hp.n_expert} experts per token")
        hp.expert_norm = bool(self.md.get(f"{self.name}.expert_weights_norm", self.default_expert_norm))
        return hp
