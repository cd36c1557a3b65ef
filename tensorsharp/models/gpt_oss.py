"""gpt-oss: OpenAI's GPT-OSS (20B, 120B) — attention with Q/K/V/output biases and a learned sink
logit per head, even layers sliding over a window and odd ones global, YaRN; in every layer a routed
FFN: top-k experts by the router's logits (router bias included) weighted by a softmax over the
picked ones, experts with biases and a clamped SwiGLU."""
from tensorsharp.models.base import FFN_SWIGLU_CLAMP, HParams, LayerParams
from tensorsharp.models.qwen3moe import Qwen3Moe

# llama.cpp's constants for every GPT-OSS file (the converter writes neither; HF's swiglu_alpha and
# swiglu_limit defaults).
GLU_ALPHA, GLU_LIMIT = 1.702, 7.0


class GptOss(Qwen3Moe):
    name = "gpt-oss"
    ffn_act = FFN_SWIGLU_CLAMP
    required_layer_tensors = ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                              "attn_q.bias", "attn_k.bias", "attn_v.bias", "attn_output.weight",
                              "attn_output.bias", "attn_sinks.weight", "ffn_norm.weight", "ffn_gate_inp.weight",
                              "ffn_gate_inp.bias", "ffn_gate_exps.weight", "ffn_up_exps.weight",
                              "ffn_down_exps.weight", "ffn_gate_exps.bias", "ffn_up_exps.bias",
                              "ffn_down_exps.bias")
    # The converter names the FFN's pre-norm (HF post_attention_layernorm) post_attention_norm.
    layer_tensor_names = {"ffn_norm.weight": "post_attention_norm.weight"}

    def hparams(self, n_vocab: int) -> HParams:
        hp = super().hparams(n_vocab)
        # A softmax over the picked logits is the full softmax's top-k renormalised.
        hp.expert_norm = True
        hp.glu_alpha, hp.glu_limit = GLU_ALPHA, GLU_LIMIT
        return hp

    def layer_params(self, hp: HParams, layer: int) -> LayerParams:
        lp = super().layer_params(hp, layer)
        # llama.cpp's pattern for gpt-oss: even layers slide, odd ones see everything.
        return lp._replace(window=hp.sliding_window) if layer % 2 == 0 else lp
