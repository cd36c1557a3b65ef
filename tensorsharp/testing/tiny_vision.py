"""Tiny random multimodal projectors, written as llama.cpp's converter writes mmproj GGUF files.

write_tiny_projector needs only numpy and gguf; hf_reference (torch + transformers, imported when
called) builds the same encoder in HF transformers from what write_tiny_projector returns, as the
oracle: SiglipVisionModel + Gemma3MultiModalProjector for "gemma3", a SigLIP or CLIP ViT's
second-to-last hidden state through mm.0 -> GELU -> mm.2 for "mlp" (llama.cpp's llava graph).
"""
from __future__ import annotations

import math
from pathlib import Path

import gguf
import numpy as np

WEIGHT_TYPES = ("F32", "F16", "Q8_0")
_FILE_TYPES = {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
               "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
# SigLIP's preprocessing constants (Gemma 3) and CLIP's (LLaVA 1.5).
_MEAN_STD = {"siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
             "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))}
_DEFAULTS = dict(image_size=64, patch_size=8, hidden_size=64, intermediate_size=128,
                 num_hidden_layers=2, num_attention_heads=4, layer_norm_eps=1e-6)


def write_tiny_projector(path, *, n_embd_text: int, projector_type: str = "gemma3", seed: int = 0,
                         weight_type: str = "F32", vit: str = "siglip", mm_tokens_per_image: int = 16,
                         n_mm_ff: int = 96, **dims) -> dict:
    """Write a random projector GGUF to path; returns what a test needs to rebuild it in HF:

    projector_type, vit ("siglip" | "clip"), vision_config (HF config kwargs), n_embd_text,
    mm_tokens_per_image (gemma3), feature_layer (mlp: the hidden state llama.cpp projects),
    n_tokens, image_mean, image_std, state (HF parameter name -> float32 array, as the file holds
    it: already rounded through weight_type) and path.
    Matrices are written in weight_type; vectors, embeddings and gemma3's projection stay F32
    (F16 when weight_type is not F32, as the converter forces it)."""
    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"weight type {weight_type!r} is not one of {WEIGHT_TYPES}")
    if projector_type not in ("gemma3", "mlp") or vit not in ("siglip", "clip"):
        raise ValueError(f"no tiny projector of type {projector_type!r} over {vit!r}")
    if projector_type == "gemma3" and vit != "siglip":
        raise ValueError("gemma3 projectors sit on SigLIP")
    cfg = dict(_DEFAULTS, **dims)
    E, F, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    P, S = cfg["patch_size"], cfg["image_size"]
    side = S // P
    cls = vit == "clip"
    n_pos = side * side + cls
    rng = np.random.default_rng(seed)
    qtype = gguf.GGMLQuantizationType[weight_type]

    def randn(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    def stored(x, t):
        """x as the file will hold it, and the raw array to write."""
        if t == "F32":
            return x, x
        if t == "F16":
            h = x.astype(np.float16)
            return h.astype(np.float32), h
        raw = gguf.quants.quantize(x, qtype)
        return gguf.quants.dequantize(raw, qtype).reshape(x.shape).astype(np.float32), raw

    state, tensors = {}, []  # tensors: (gguf name, raw array, raw dtype or None)

    def add(hf_name, gguf_name, x, t="F32", file_value=None):
        """gguf_name None: a parameter only the HF model has."""
        value, raw = stored(x, t)
        state[hf_name] = value
        if file_value is not None:
            raw = file_value(value)
        if gguf_name is not None:
            tensors.append((gguf_name, raw, qtype if t == "Q8_0" else None))

    def matrix(rows, cols):
        return randn(rows, cols, scale=1.0 / math.sqrt(cols))

    mat_t = weight_type
    pre = "vision_model."
    patch_t = "F32" if projector_type == "gemma3" or weight_type == "F32" else "F16"
    add(pre + "embeddings.patch_embedding.weight", "v.patch_embd.weight",
        randn(E, 3, P, P, scale=1.0 / math.sqrt(3 * P * P)), patch_t)
    if cls:
        add(pre + "embeddings.class_embedding", "v.class_embd", randn(E, scale=0.5))
    else:
        add(pre + "embeddings.patch_embedding.bias", "v.patch_embd.bias", randn(E, scale=0.1))
    add(pre + "embeddings.position_embedding.weight", "v.position_embd.weight", randn(n_pos, E, scale=0.5))
    if cls:
        add(pre + "pre_layrnorm.weight", "v.pre_ln.weight", 1.0 + randn(E, scale=0.2))
        add(pre + "pre_layrnorm.bias", "v.pre_ln.bias", randn(E, scale=0.1))
    for i in range(L):
        hf, g = f"{pre}encoder.layers.{i}.", f"v.blk.{i}."
        for ln, gl in (("layer_norm1", "ln1"), ("layer_norm2", "ln2")):
            add(hf + ln + ".weight", g + gl + ".weight", 1.0 + randn(E, scale=0.2))
            add(hf + ln + ".bias", g + gl + ".bias", randn(E, scale=0.1))
        for proj, gp in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"),
                         ("out_proj", "attn_out")):
            add(hf + f"self_attn.{proj}.weight", g + gp + ".weight", matrix(E, E), mat_t)
            add(hf + f"self_attn.{proj}.bias", g + gp + ".bias", randn(E, scale=0.1))
        add(hf + "mlp.fc1.weight", g + "ffn_up.weight", matrix(F, E), mat_t)
        add(hf + "mlp.fc1.bias", g + "ffn_up.bias", randn(F, scale=0.1))
        add(hf + "mlp.fc2.weight", g + "ffn_down.weight", matrix(E, F), mat_t)
        add(hf + "mlp.fc2.bias", g + "ffn_down.bias", randn(E, scale=0.1))

    info = {"projector_type": projector_type, "vit": vit, "n_embd_text": n_embd_text,
            "image_mean": _MEAN_STD[vit][0], "image_std": _MEAN_STD[vit][1], "path": Path(path)}
    # gemma3 pools the tower's post-layernorm output; llava projects a hidden state before that
    # norm, and its files carry none.
    post_ln = ("v.post_ln.weight", "v.post_ln.bias") if projector_type == "gemma3" else (None, None)
    add(pre + "post_layernorm.weight", post_ln[0], 1.0 + randn(E, scale=0.2))
    add(pre + "post_layernorm.bias", post_ln[1], randn(E, scale=0.1))
    if projector_type == "gemma3":
        per_side = math.isqrt(mm_tokens_per_image)
        if per_side * per_side != mm_tokens_per_image or side % per_side:
            raise ValueError(f"{mm_tokens_per_image} tokens do not pool a {side}x{side} patch grid")
        # HF holds w and scales by 1 + w; the converter stores 1 + w.
        add("mm_soft_emb_norm.weight", "mm.soft_emb_norm.weight", randn(E, scale=0.2),
            file_value=lambda w: w + np.float32(1.0))
        proj_t = "F32" if weight_type == "F32" else "F16"
        add("mm_input_projection_weight", "mm.input_projection.weight", matrix(n_embd_text, E).T.copy(), proj_t)
        info.update(mm_tokens_per_image=mm_tokens_per_image, n_tokens=mm_tokens_per_image)
    else:
        add("mm.0.weight", "mm.0.weight", matrix(n_mm_ff, E), mat_t)
        add("mm.0.bias", "mm.0.bias", randn(n_mm_ff, scale=0.1))
        add("mm.2.weight", "mm.2.weight", matrix(n_embd_text, n_mm_ff), mat_t)
        add("mm.2.bias", "mm.2.bias", randn(n_embd_text, scale=0.1))
        info.update(feature_layer=L - 1, n_tokens=side * side, n_mm_ff=n_mm_ff)

    hidden_act = "gelu_pytorch_tanh" if vit == "siglip" else "quick_gelu"
    info["vision_config"] = dict(cfg, hidden_act=hidden_act)
    info["state"] = state
    _write(path, info, weight_type, tensors)
    return info


def _write(path, info: dict, weight_type: str, tensors: list) -> None:
    cfg = info["vision_config"]
    w = gguf.GGUFWriter(str(path), "clip")
    w.add_type(gguf.GGUFType.MMPROJ)
    w.add_name(f"tiny-random-{info['projector_type']}-{info['vit']}")
    w.add_file_type(_FILE_TYPES[weight_type])
    w.add_clip_has_vision_encoder(True)
    w.add_clip_projector_type(info["projector_type"])
    w.add_vision_projection_dim(info["n_embd_text"])
    w.add_vision_image_size(cfg["image_size"])
    w.add_vision_patch_size(cfg["patch_size"])
    w.add_vision_embedding_length(cfg["hidden_size"])
    w.add_vision_feed_forward_length(cfg["intermediate_size"])
    w.add_vision_block_count(cfg["num_hidden_layers"])
    w.add_vision_head_count(cfg["num_attention_heads"])
    w.add_vision_attention_layernorm_eps(cfg["layer_norm_eps"])
    w.add_vision_image_mean(list(info["image_mean"]))
    w.add_vision_image_std(list(info["image_std"]))
    w.add_vision_use_gelu(info["vit"] == "siglip")
    if info["projector_type"] == "gemma3":
        pool = (cfg["image_size"] // cfg["patch_size"]) // math.isqrt(info["mm_tokens_per_image"])
        if pool != 4:  # as the converter: only a non-default pooling is written
            w.add_vision_projector_scale_factor(pool)
    for name, raw, raw_dtype in tensors:
        w.add_tensor(name, raw, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def hf_reference(info: dict):
    """pixels (3, S, S) float32 -> HF's (n_tokens, n_embd_text) float32 for the projector in info."""
    import torch
    import transformers

    cfg = dict(info["vision_config"])
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in info["state"].items()}
    vision_state = {k: v for k, v in state.items() if k.startswith("vision_model.")}
    if info["vit"] == "siglip":
        vcfg = transformers.SiglipVisionConfig(**cfg, vision_use_head=False)
        tower = transformers.SiglipVisionModel(vcfg)
    else:
        vcfg = transformers.CLIPVisionConfig(**cfg)
        tower = transformers.CLIPVisionModel(vcfg)
    tower.config._attn_implementation = "eager"
    if not any(k.startswith("vision_model.") for k in tower.state_dict()):
        # transformers 5 keeps the vision tower's parameters at the top level
        vision_state = {k[len("vision_model."):]: v for k, v in vision_state.items()}
    tower.load_state_dict(vision_state, strict=True)
    tower = tower.float().eval()

    if info["projector_type"] == "gemma3":
        from transformers.models.gemma3.modeling_gemma3 import Gemma3MultiModalProjector

        text = transformers.Gemma3TextConfig(hidden_size=info["n_embd_text"], intermediate_size=64,
                                             num_hidden_layers=1, num_attention_heads=1,
                                             num_key_value_heads=1, head_dim=32, vocab_size=64)
        config = transformers.Gemma3Config(text_config=text.to_dict(), vision_config=vcfg.to_dict(),
                                           mm_tokens_per_image=info["mm_tokens_per_image"])
        proj = Gemma3MultiModalProjector(config).float().eval()
        proj.load_state_dict({k: state[k] for k in ("mm_input_projection_weight", "mm_soft_emb_norm.weight")},
                             strict=True)

        def run(hidden):
            return proj(hidden.last_hidden_state)
    else:
        mm0 = torch.nn.Linear(cfg["hidden_size"], info["n_mm_ff"])
        mm2 = torch.nn.Linear(info["n_mm_ff"], info["n_embd_text"])
        mm0.load_state_dict({"weight": state["mm.0.weight"], "bias": state["mm.0.bias"]})
        mm2.load_state_dict({"weight": state["mm.2.weight"], "bias": state["mm.2.bias"]})
        skip = 1 if info["vit"] == "clip" else 0

        def run(hidden):
            feats = hidden.hidden_states[info["feature_layer"]][:, skip:]
            # llama.cpp's llava graph uses the tanh GELU (ggml_gelu) between mm.0 and mm.2.
            return mm2(torch.nn.functional.gelu(mm0(feats), approximate="tanh"))

    def forward(pixels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None]
            hidden = tower(pixel_values=x, output_hidden_states=True)
            return run(hidden)[0].float().numpy()

    return forward
