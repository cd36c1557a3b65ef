"""qwen2moe: Qwen1.5-MoE and Qwen2-57B-A14B — Qwen2's attention (Q/K/V biases), and in every layer
a softmax router's top-k experts (weights not renormalised) plus a shared expert every token
passes through, scaled by a sigmoid gate."""
from tensorsharp.models.base import HParams
from tensorsharp.models.qwen3moe import Qwen3Moe


class Qwen2Moe(Qwen3Moe):
    name = "qwen2moe"
    required_layer_tensors = ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                              "attn_output.weight", "ffn_norm.weight", "ffn_gate_inp.weight",
                              "ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight",
                              "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight", "ffn_gate_inp_shexp.weight")
    layer_tensor_names = {"ffn_gate.weight": "ffn_gate_shexp.weight", "ffn_up.weight": "ffn_up_shexp.weight",
                          "ffn_down.weight": "ffn_down_shexp.weight"}
    # llama.cpp does not renormalise Qwen2-MoE's top-k weights (HF norm_topk_prob false).
    default_expert_norm = False

    def hparams(self, n_vocab: int) -> HParams:
        hp = super().hparams(n_vocab)
        # The dense FFN slots hold the shared expert.
        hp.n_ff = int(self.key("expert_shared_feed_forward_length"))
        return hp
