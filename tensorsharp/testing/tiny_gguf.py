"""Tiny random HF transformers models, written to GGUF as llama.cpp's converter writes them.

The oracle for architectures without a real model file: HF transformers runs the random weights
in float32, tensorsharp runs the same weights from the GGUF file, and the logits are compared.
Needs torch and transformers (imported here, not by the package).
"""
from __future__ import annotations

import math
from pathlib import Path

import gguf
import numpy as np
import torch
import transformers

from tensorsharp.testing.gguf_vocab import write_vocab

# HF config.model_type -> GGUF general.architecture.
ARCH_OF_MODEL_TYPE = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3"}

# The weight types a tiny file can be written in (gguf-py quantizes these; it has no k-quant
# quantizer). Vectors stay F32 whatever the type, as in the converter.
WEIGHT_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1")

_FILE_TYPES = {"F32": "ALL_F32", "F16": "MOSTLY_F16", "BF16": "MOSTLY_BF16", "Q8_0": "MOSTLY_Q8_0",
               "Q4_0": "MOSTLY_Q4_0", "Q4_1": "MOSTLY_Q4_1", "Q5_0": "MOSTLY_Q5_0", "Q5_1": "MOSTLY_Q5_1"}

# Small defaults per architecture: GQA, head_dim a multiple of 32, every matrix row a whole
# number of 32-element blocks. Gemma3 gets six layers so it has both sliding and global ones.
_DEFAULTS = {
    "llama": dict(cls="LlamaConfig", hidden_size=128, intermediate_size=256, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5),
    "qwen2": dict(cls="Qwen2Config", hidden_size=128, intermediate_size=320, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=1, rms_norm_eps=1e-6,
                  tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
    "qwen3": dict(cls="Qwen3Config", hidden_size=128, intermediate_size=256, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=64, rms_norm_eps=1e-6,
                  rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
    "gemma3": dict(cls="Gemma3TextConfig", hidden_size=128, intermediate_size=256, num_hidden_layers=6,
                   num_attention_heads=4, num_key_value_heads=1, head_dim=64, query_pre_attn_scalar=64,
                   sliding_window=8, rms_norm_eps=1e-6),
    # The families below are written by llama.cpp's converter (tensorsharp.testing.llama_convert).
    # Llama 3.2's layout (tied output, RoPE scaling): a short original context puts the pairs in
    # all three regimes (unscaled, divided by the factor, smoothed between) within a few dozen
    # positions.
    "llama3": dict(cls="LlamaConfig", hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, tie_word_embeddings=True,
                   rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
                                    "rope_theta": 500000.0}),
    # Even layers slide (window 8); head_dim is the attention scale llama.cpp uses below 27B. Caps
    # low enough to bend the tiny model's scores and logits.
    "gemma2": dict(cls="Gemma2Config", hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=32,
                   sliding_window=8, attn_logit_softcapping=5.0, final_logit_softcapping=5.0,
                   rms_norm_eps=1e-6),
    # llama.cpp runs Phi-3 without its sliding window, so HF gets none either.
    "phi3": dict(cls="Phi3Config", hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, sliding_window=None,
                 pad_token_id=0, bos_token_id=1, eos_token_id=2),
    # Every fourth layer skips RoPE.
    "smollm3": dict(cls="SmolLM3Config", hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, pad_token_id=0,
                    bos_token_id=1, eos_token_id=2),
    "granite": dict(cls="GraniteConfig", hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, embedding_multiplier=6.0,
                    residual_multiplier=0.3, attention_multiplier=0.1, logits_scaling=4.0),
    # OLMo's converter reads a real BPE tokenizer (llama_convert.BPE_VOCAB tokens): a narrow model
    # keeps its embedding and output small.
    "olmo2": dict(cls="Olmo2Config", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, rms_norm_eps=1e-6, pad_token_id=0,
                  bos_token_id=0, eos_token_id=0, vocab_size=49152),
    # Eight experts, two per token, renormalised as in every released Qwen3-MoE; its converter reads
    # a BPE tokenizer too, so the output is tied to keep the file small.
    "qwen3moe": dict(cls="Qwen3MoeConfig", hidden_size=128, intermediate_size=256, moe_intermediate_size=64,
                     num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=64, rms_norm_eps=1e-6,
                     vocab_size=49152, tie_word_embeddings=True, pad_token_id=0, bos_token_id=0, eos_token_id=0,
                     rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
    # Qwen2-MoE: Q/K/V biases, top-2 of 8 experts without renormalising, a gated shared expert.
    "qwen2moe": dict(cls="Qwen2MoeConfig", hidden_size=128, intermediate_size=256, moe_intermediate_size=64,
                     shared_expert_intermediate_size=96, num_experts=8, num_experts_per_tok=2,
                     norm_topk_prob=False, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     rms_norm_eps=1e-6, vocab_size=49152, tie_word_embeddings=True, pad_token_id=0,
                     bos_token_id=0, eos_token_id=0, rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
    # OLMo 3 (GGUF architecture olmo2): three sliding layers, then a global one.
    "olmo3": dict(cls="Olmo3Config", hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=2, num_key_value_heads=1, rms_norm_eps=1e-6, pad_token_id=0,
                  bos_token_id=0, eos_token_id=0, vocab_size=49152, sliding_window=8),
    # GPT-OSS: top-4 of 8 experts (softmax over the picked logits), biases everywhere, attention
    # sinks, even layers sliding over 8 positions, YaRN over an original context of 16 (all three
    # regimes of pairs within the prompt). Its converter reads a BPE tokenizer too.
    "gpt_oss": dict(cls="GptOssConfig", hidden_size=64, intermediate_size=64, num_local_experts=8,
                    num_experts_per_tok=4, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                    head_dim=32, sliding_window=8, rms_norm_eps=1e-5, vocab_size=49152, tie_word_embeddings=False,
                    pad_token_id=0, bos_token_id=0, eos_token_id=0, max_position_embeddings=64,
                    rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0, "beta_fast": 32.0,
                                     "beta_slow": 1.0, "original_max_position_embeddings": 16}),
}


def tiny_config(arch: str, **overrides):
    """An HF config of a tiny `arch` model (a key of _DEFAULTS; 384 tokens unless it says
    otherwise); overrides win."""
    kw = dict(vocab_size=384, max_position_embeddings=256)
    kw.update(_DEFAULTS[arch])
    kw.update(overrides)
    cls = getattr(transformers, kw.pop("cls"))
    return cls(**kw)


# Widths that make every matrix row a whole number of 256-element super-blocks, so that k-quants
# and i-quants apply as they do to real models instead of falling back to a 32-block type: hidden,
# attention (4 heads of 64), FFN and expert widths are multiples of 256.
_ALIGNED = dict(hidden_size=256, intermediate_size=512, num_attention_heads=4, head_dim=64)
_ALIGNED_ARCH = {
    "gemma2": dict(query_pre_attn_scalar=64),
    "qwen3moe": dict(moe_intermediate_size=256),
    "qwen2moe": dict(moe_intermediate_size=256, shared_expert_intermediate_size=256),
    "gpt_oss": dict(intermediate_size=256),   # each expert's width
}


def aligned_config(arch: str, **overrides):
    """tiny_config(arch) widened so that every matrix's rows are whole 256-element super-blocks."""
    return tiny_config(arch, **{**_ALIGNED, **_ALIGNED_ARCH.get(arch, {}), **overrides})


def random_model(config, seed: int = 0):
    """The float32 HF causal LM of config with every parameter drawn at random.

    HF's own init leaves norms at one and biases at zero, which would hide a missing norm or
    bias; here matrices are scaled to keep activations near unit size, so attention is neither
    uniform nor one-hot."""
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32,
                                                          attn_implementation="eager")
    gemma = config.model_type in ("gemma2", "gemma3_text")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_((0.0 if gemma else 1.0) + 0.2 * r)  # gemma norms scale by 1 + w
            elif p.ndim == 1:
                p.copy_(0.3 * r)
            elif "embed_tokens" in name:
                p.copy_(0.5 * r)
            else:
                p.copy_(r / math.sqrt(p.shape[-1]))  # fan-in, also of stacked (n_expert, out, in) experts
    return model.eval()


def random_encoder(config, seed: int = 0):
    """The float32 HF encoder (BertModel, ...) of config with every parameter drawn at random, as
    random_model draws a decoder's: norms near one, biases and embeddings non-zero."""
    model = transformers.AutoModel.from_config(config, dtype=torch.float32, attn_implementation="eager")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith(("LayerNorm.weight", "layernorm.weight")):
                p.copy_(1.0 + 0.2 * r)
            elif p.ndim == 1:
                p.copy_(0.3 * r)
            elif "embeddings" in name:
                p.copy_(0.5 * r)
            else:
                p.copy_(r / math.sqrt(p.shape[-1]))
    return model.eval()


def hf_logits(model, tokens) -> np.ndarray:
    """float32 logits (len(tokens), n_vocab) of one sequence."""
    with torch.no_grad():
        out = model(torch.as_tensor([list(tokens)], dtype=torch.long), use_cache=False)
    return out.logits[0].float().numpy()


def interleaved_logits(model, a: np.ndarray, b: np.ndarray, n_ctx: int, chunk: int = 13):
    """Logits of two sequences of the same length decoded together by the engine, their tokens
    alternating in each batch of 2 x chunk rows (13: chunks that do not line up with sliding
    windows), as (a's, b's)."""
    from tensorsharp.engine.batch import Stepper
    from tensorsharp.engine.kv_cache import KVCache
    stepper = Stepper(model, KVCache(model, n_ctx=n_ctx, n_seq=2), n_batch=2 * chunk)
    got = {0: [], 1: []}
    for start in range(0, len(a), chunk):
        pos = np.arange(start, min(start + chunk, len(a)))
        toks = np.stack([b[pos], a[pos]], axis=1).reshape(-1)
        out = stepper.step(toks, np.repeat(pos, 2), np.tile([1, 0], len(pos)), np.arange(2 * len(pos)))
        got[1].append(out[0::2])
        got[0].append(out[1::2])
    return np.concatenate(got[0]), np.concatenate(got[1])


def write_gguf(model, path, weight_type: str = "F32", chat_template: str | None = None,
               added_tokens: dict[str, gguf.TokenType] | None = None) -> Path:
    """Write model to path as convert_hf_to_gguf.py would (matrices in weight_type); returns path.
    chat_template becomes tokenizer.chat_template; added_tokens (text -> CONTROL or USER_DEFINED)
    follow <|endoftext|> in the vocabulary, as a model's special tokens do."""
    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"weight type {weight_type!r} is not one of {WEIGHT_TYPES}")
    config = model.config
    arch = _arch(config)
    path = Path(path)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny-random-{arch}")
    _write_hparams(w, config, arch)
    w.add_file_type(getattr(gguf.LlamaFileType, _FILE_TYPES[weight_type]))
    write_vocab(w, config.vocab_size, added_tokens or {})
    if chat_template is not None:
        w.add_chat_template(chat_template)
    qtype = gguf.GGMLQuantizationType[weight_type]
    for name, data in _gguf_tensors(model, arch):
        if data.ndim == 1 or weight_type == "F32":
            w.add_tensor(name, data.astype(np.float32))
        else:
            w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _arch(config) -> str:
    try:
        return ARCH_OF_MODEL_TYPE[config.model_type]
    except KeyError:
        raise ValueError(f"no GGUF writer for HF model type {config.model_type!r}") from None


def _rope(config, arch: str) -> dict:
    """The rope parameters of the global (full attention) layers."""
    rp = dict(config.rope_parameters or {})
    if arch == "gemma3":
        local = rp["sliding_attention"]
        # llama.cpp fixes gemma3's local layers at base 10000 without scaling.
        if local.get("rope_type", "default") != "default" or local.get("rope_theta") != 10000.0:
            raise ValueError("gemma3 sliding layers must use plain RoPE with base 10000")
        rp = dict(rp["full_attention"])
    if rp.get("rope_type", "default") not in ("default", "linear"):
        raise ValueError(f"rope type {rp['rope_type']!r} has no GGUF form here")
    return rp


def _write_hparams(w: gguf.GGUFWriter, config, arch: str) -> None:
    hp = config.to_dict()
    rope = _rope(config, arch)
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_rope_freq_base(float(rope["rope_theta"]))
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    if hp.get("head_dim") is not None:  # the converter writes it only when config.json has it
        w.add_key_length(hp["head_dim"])
        w.add_value_length(hp["head_dim"])
    if rope.get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(rope["factor"]))
    if arch == "llama":
        w.add_vocab_size(config.vocab_size)
        w.add_rope_dimension_count(hp.get("head_dim") or config.hidden_size // config.num_attention_heads)
    if arch == "gemma3":
        head_dim = config.head_dim
        if config.query_pre_attn_scalar != head_dim:
            raise ValueError("llama.cpp scales gemma3 attention by 1/sqrt(head_dim): "
                             "query_pre_attn_scalar must equal head_dim")
        if config.attn_logit_softcapping is not None:
            raise ValueError("gemma3 has no attention logit softcapping")
        pattern = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                   for i in range(config.num_hidden_layers)]
        if "sliding_attention" in config.layer_types:
            if list(config.layer_types) != pattern:
                raise ValueError("llama.cpp's gemma3 has five sliding layers, then one global")
            w.add_sliding_window(config.sliding_window)
        if config.final_logit_softcapping:
            w.add_final_logit_softcapping(float(config.final_logit_softcapping))


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row order: HF rotates halves of each head, GGML rotates adjacent pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_tensors(model, arch: str):
    """(GGUF name, float32 array) of every weight, renamed and transformed as the converter does."""
    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config.num_hidden_layers)
    for hf_name, t in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied: HF saves no lm_head, llama.cpp reads token_embd instead
        data = t.detach().float().numpy().copy()
        if arch == "llama" and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = _permute(data, config.num_attention_heads)
        elif arch == "llama" and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = _permute(data, config.num_key_value_heads)
        if arch == "gemma3" and hf_name.endswith("norm.weight"):
            data = data + 1.0  # Gemma3RMSNorm multiplies by 1 + weight
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"no GGUF name for HF tensor {hf_name}")
        yield name, data


# GPT-2's printable stand-ins for the 256 byte values.
# Gemma 3's turn and image tokens: with them a tiny gemma3 model takes the built-in Gemma chat
# template and images (the server wraps each image in <start_of_image> ... <end_of_image>).
GEMMA3_CHAT_TOKENS = {t: gguf.TokenType.CONTROL
                      for t in ("<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>")}


def write_gemma3_chat_model(path, seed: int = 0, weight_type: str = "F32", **overrides) -> Path:
    """A tiny random gemma3 model whose vocabulary holds GEMMA3_CHAT_TOKENS (config overrides as
    for tiny_config); returns path."""
    model = random_model(tiny_config("gemma3", **overrides), seed=seed)
    return write_gguf(model, path, weight_type, added_tokens=GEMMA3_CHAT_TOKENS)
