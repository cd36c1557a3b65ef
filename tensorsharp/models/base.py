"""Shared base of the decoder architectures: GGUF metadata and weights into the native model."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from tensorsharp import _kernels, config, kernels
from tensorsharp.errors import GGUFError
from tensorsharp.gguf.types import tensor_type
from tensorsharp.models import rope

# Slot numbers of csrc/include/ts/model.h (ts_weight_slot / ts_global_slot) and the GGUF tensor
# names llama.cpp's converter gives them.
LAYER_SLOTS = {
    0: "attn_norm.weight", 1: "attn_q.weight", 2: "attn_k.weight", 3: "attn_v.weight",
    4: "attn_q.bias", 5: "attn_k.bias", 6: "attn_v.bias", 7: "attn_q_norm.weight",
    8: "attn_k_norm.weight", 9: "attn_output.weight", 10: "post_attention_norm.weight",
    11: "ffn_norm.weight", 12: "ffn_gate.weight", 13: "ffn_up.weight", 14: "ffn_down.weight",
    15: "post_ffw_norm.weight", 17: "ffn_gate_inp.weight", 18: "ffn_gate_exps.weight",
    19: "ffn_up_exps.weight", 20: "ffn_down_exps.weight", 21: "ffn_gate_inp_shexp.weight",
    22: "attn_sinks.weight", 23: "attn_output.bias", 24: "ffn_gate_inp.bias", 25: "ffn_gate_exps.bias",
    26: "ffn_up_exps.bias", 27: "ffn_down_exps.bias",
}
SLOT_OF = {suffix: slot for slot, suffix in LAYER_SLOTS.items()}
ROPE_FREQS_SLOT = 16
GLOBAL_SLOTS = {0: "token_embd.weight", 1: "output_norm.weight", 2: "output.weight"}
EMBD_SLOT = 0
REPACK_SLICE_BYTES = 4 << 20  # file bytes a load repacks before dropping their pages
FFN_SILU, FFN_GELU, FFN_SWIGLU_CLAMP = 0, 1, 2
# Model-wide RoPE frequency factors as llama.cpp's converter writes them: Llama 3's, and
# LongRoPE's pair of which one is picked by the context length.
ROPE_FREQS, ROPE_LONG, ROPE_SHORT = "rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight"


@dataclass
class HParams:
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    n_rot: int
    n_ctx_train: int
    norm_eps: float
    rope_base: float
    rope_scale: float     # multiplies positions: 1 / linear scaling factor
    rope_neox: bool
    ffn_act: int = FFN_SILU
    embd_scale: float = 1.0
    attn_scale: float = 0.0  # 0: 1/sqrt(head_dim)
    attn_softcap: float = 0.0
    final_softcap: float = 0.0
    sliding_window: int = 0
    residual_scale: float = 1.0
    logit_scale: float = 1.0   # divides the logits
    qk_norm_whole: bool = False
    rope_mscale: float = 1.0   # multiplies RoPE's cos and sin (rope.scaling.attn_factor)
    n_ctx_orig: int = 0        # LongRoPE: contexts per sequence beyond it take the long factors
    rope_yarn: bool = False    # layers scaled by rope_scale rotate by YaRN (tensorsharp.models.rope)
    n_expert: int = 0          # experts of a routed FFN layer; 0: dense
    n_expert_used: int = 0     # experts each token takes
    n_ff_exp: int = 0          # hidden width of one expert
    expert_norm: bool = False  # the chosen experts' weights are renormalised to sum to one
    glu_alpha: float = 0.0     # FFN_SWIGLU_CLAMP: g' = min(g, limit), u' = clamp(u, +-limit),
    glu_limit: float = 0.0     # y = g' sigmoid(alpha g') (u' + 1)
    extra: dict = field(default_factory=dict)

    def native(self) -> dict:
        return {
            "n_layer": self.n_layer, "n_embd": self.n_embd, "n_head": self.n_head,
            "n_head_kv": self.n_head_kv, "head_dim": self.head_dim, "n_ff": self.n_ff,
            "n_vocab": self.n_vocab, "n_rot": self.n_rot, "rope_neox": int(self.rope_neox),
            "norm_eps": self.norm_eps, "ffn_act": self.ffn_act, "embd_scale": self.embd_scale,
            "attn_scale": self.attn_scale or 1.0 / math.sqrt(self.head_dim),
            "attn_softcap": self.attn_softcap, "final_softcap": self.final_softcap,
            "residual_scale": self.residual_scale, "logit_scale": self.logit_scale,
            "qk_norm_whole": int(self.qk_norm_whole), "n_expert": self.n_expert,
            "n_expert_used": self.n_expert_used, "n_ff_exp": self.n_ff_exp, "expert_norm": int(self.expert_norm),
            "glu_alpha": self.glu_alpha, "glu_limit": self.glu_limit,
        }


class LayerParams(NamedTuple):
    rope_base: float
    rope_scale: float
    window: int = 0           # sliding window in positions; 0: full attention
    rope_mscale: float = 1.0
    use_rope: bool = True


class Architecture:
    """Reads one GGUF `general.architecture`; subclasses override what differs."""

    name = ""
    rope_neox = True
    ffn_act = FFN_SILU
    required_layer_tensors = ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                              "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight",
                              "ffn_up.weight", "ffn_down.weight")
    # Tensors a converter keeps fused, cut into row ranges of slots at load time: suffix ->
    # ((slot suffix, rows) ...), rows "q" = n_head*head_dim, "kv" = n_head_kv*head_dim, "ff" = n_ff.
    fused_layer_tensors: dict = {}
    # Slot suffix -> the file's suffix where a family names a slot's tensor otherwise (Qwen2-MoE's
    # shared expert takes the dense FFN slots). A file name given to another slot is not also read
    # under its own.
    layer_tensor_names: dict = {}

    def __init__(self, metadata: dict):
        self.md = metadata

    def key(self, suffix: str, default=None):
        value = self.md.get(f"{self.name}.{suffix}", default)
        if value is None:
            raise GGUFError(f"missing metadata key {self.name}.{suffix}")
        return value

    def hparams(self, n_vocab: int) -> HParams:
        n_embd = int(self.key("embedding_length"))
        n_head = int(self.key("attention.head_count"))
        head_dim = int(self.key("attention.key_length", n_embd // max(n_head, 1)))
        # llama.cpp's reading: without a type the factor still applies (as linear scaling).
        scaling = self.md.get(f"{self.name}.rope.scaling.type", "linear")
        if scaling not in ("none", "linear", "longrope", "yarn"):
            raise GGUFError(f"{self.name} model uses rope scaling {scaling!r}, which this engine does not support")
        factor = float(self.md.get(f"{self.name}.rope.scaling.factor", 0.0) or 0.0)
        scale = 1.0 / factor if scaling != "none" and factor > 0 else 1.0
        n_ctx_train = int(self.key("context_length"))
        return HParams(
            n_layer=int(self.key("block_count")),
            n_embd=n_embd,
            n_head=n_head,
            n_head_kv=int(self.key("attention.head_count_kv", n_head)),
            head_dim=head_dim,
            n_ff=int(self.key("feed_forward_length")),
            n_vocab=n_vocab,
            n_rot=int(self.key("rope.dimension_count", head_dim)),
            n_ctx_train=n_ctx_train,
            norm_eps=float(self.key("attention.layer_norm_rms_epsilon")),
            rope_base=float(self.key("rope.freq_base", 10000.0)),
            rope_scale=scale,
            rope_neox=self.rope_neox,
            ffn_act=self.ffn_act,
            sliding_window=int(self.md.get(f"{self.name}.attention.sliding_window", 0) or 0),
            rope_mscale=float(self.md.get(f"{self.name}.rope.scaling.attn_factor", 1.0) or 1.0),
            n_ctx_orig=int(self.md.get(f"{self.name}.rope.scaling.original_context_length", n_ctx_train)),
            rope_yarn=scaling == "yarn",
        )

    def layer_params(self, hp: HParams, layer: int) -> LayerParams:
        return LayerParams(hp.rope_base, hp.rope_scale, 0, hp.rope_mscale)

    def rope_factors(self, tensors, hp: HParams, n_ctx_seq: int) -> str | None:
        """Name of the frequency factors every layer's RoPE divides by, or None (llama.cpp's
        choice: Llama 3's rope_freqs, else LongRoPE's long factors when a sequence's context
        exceeds the original training context, else the short ones)."""
        if ROPE_FREQS in tensors:
            return ROPE_FREQS
        pick = ROPE_LONG if n_ctx_seq > hp.n_ctx_orig else ROPE_SHORT
        return pick if pick in tensors else None


class Transformer:
    """A loaded model: hyper-parameters and the native weights over the file's mmap."""

    def __init__(self, gguf, arch_cls: type[Architecture]):
        self.gguf = gguf  # keeps the mmap alive as long as the model
        self.arch = arch_cls(gguf.metadata)
        self._repack = config.repack_weights()
        self._arena = kernels.WeightArena()
        self._used: set[str] = set()
        emb = self._tensor("token_embd.weight")
        self.hparams = hp = self.arch.hparams(n_vocab=int(emb.shape[1]))
        self.native = _kernels.NativeModel(hp.native())
        cuts: dict[str, list] = {}
        for part, (name, r0, r1) in self.fused_parts().items():
            cuts.setdefault(name, []).append((SLOT_OF[part.split(".", 2)[2]], r0, r1))
        renamed = set(self.arch.layer_tensor_names.values())
        for layer in range(hp.n_layer):
            filled = set()
            for name, parts in cuts.items():
                if name.startswith(f"blk.{layer}."):
                    filled |= self._set_fused(layer, name, parts)
            for slot, suffix in LAYER_SLOTS.items():
                file_suffix = self.arch.layer_tensor_names.get(suffix, None if suffix in renamed else suffix)
                name = f"blk.{layer}.{file_suffix}"
                if file_suffix and slot not in filled and name in gguf.tensors:
                    self._set(layer, slot, name)
                    filled.add(slot)
            for suffix in self.arch.required_layer_tensors:
                if SLOT_OF[suffix] not in filled:
                    raise GGUFError(f"{self.arch.name} model lacks tensor "
                                    f"blk.{layer}.{self.arch.layer_tensor_names.get(suffix, suffix)}")
        for slot, name in GLOBAL_SLOTS.items():
            if name in gguf.tensors:
                self._set(-1, slot, name)
        self._used |= {n for n in (ROPE_FREQS, ROPE_LONG, ROPE_SHORT) if n in gguf.tensors}
        # Until the application names its context: that of the original training (LongRoPE's short factors).
        self.use_context(hp.n_ctx_orig)
        unused = sorted(set(gguf.tensors) - self._used)
        if unused:
            # A tensor we do not apply (a bias, a new kind of factor, ...) would silently change the result.
            raise GGUFError(f"{self.arch.name} model has tensors this engine does not support: "
                            f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}")
        self.native.finalize()
        self._arena = None  # its mappings now live as long as the matrices in them

    def use_context(self, n_ctx_seq: int) -> None:
        """Sets each layer's RoPE (frequency factors included) for sequences of up to n_ctx_seq
        positions."""
        self.n_ctx_seq = n_ctx_seq
        name = self.arch.rope_factors(self.gguf.tensors, self.hparams, n_ctx_seq)
        for layer in range(self.hparams.n_layer):
            lp, factors = self.layer_rope(layer)
            self.native.set_layer_params(layer, lp.rope_base, lp.rope_scale, lp.window, lp.rope_mscale, lp.use_rope)
            if factors is not None:
                data = np.ascontiguousarray(factors, dtype=np.float32).view(np.uint8).reshape(1, -1)
                try:
                    self.native.set_tensor(layer, ROPE_FREQS_SLOT, data, tensor_type("F32").id, len(factors))
                except ValueError as e:
                    raise GGUFError(f"RoPE frequency factors {name or 'of YaRN'} ({len(factors)} values): "
                                    f"{e}") from None

    def layer_rope(self, layer: int) -> tuple[LayerParams, np.ndarray | None]:
        """A layer's parameters and RoPE frequency divisors (n_rot/2) for the current context, with
        YaRN folded in (the layer then rotates with scale 1)."""
        hp = self.hparams
        name = self.arch.rope_factors(self.gguf.tensors, hp, self.n_ctx_seq)
        lp, factors = self.arch.layer_params(hp, layer), self._f32_vector(name) if name else None
        if hp.rope_yarn and lp.rope_scale != 1.0:
            factors, mscale = rope.yarn(hp.n_rot, hp.n_ctx_orig, lp.rope_base, lp.rope_scale, factors)
            lp = lp._replace(rope_scale=1.0, rope_mscale=lp.rope_mscale * mscale)
        return lp, factors

    def fused_parts(self) -> dict[str, tuple[str, int, int]]:
        """Slot tensor name -> (fused tensor name, first row, end row) of every fused tensor cut."""
        hp = self.hparams
        rows = {"q": hp.n_head * hp.head_dim, "kv": hp.n_head_kv * hp.head_dim, "ff": hp.n_ff}
        parts = {}
        for layer in range(hp.n_layer):
            for suffix, spec in self.arch.fused_layer_tensors.items():
                name = f"blk.{layer}.{suffix}"
                if name in self.gguf.tensors:
                    r = 0
                    for part, unit in spec:
                        parts[f"blk.{layer}.{part}"] = (name, r, r + rows[unit])
                        r += rows[unit]
        return parts

    def _f32_vector(self, name: str) -> np.ndarray:
        t = self._tensor(name)
        if t.type_name != "F32" or len(t.shape) != 1:
            raise GGUFError(f"tensor {name} ({t.type_name} {list(t.shape)}) is not an F32 vector")
        return np.asarray(t.data).view(np.float32)

    def _tensor(self, name: str):
        try:
            return self.gguf.tensors[name]
        except KeyError:
            raise GGUFError(f"model lacks tensor {name}") from None

    def _rows(self, name: str):
        """(tensor, its data as (rows, row bytes), cols)."""
        t = self._tensor(name)
        self._used.add(name)
        cols = int(t.shape[0])
        rows = int(np.prod(t.shape[1:], dtype=np.int64)) if len(t.shape) > 1 else 1
        return t, np.asarray(t.data).reshape(rows, -1), cols

    def _packs(self, layer: int, slot: int, t, data) -> bool:
        # The embedding only where the output is tied to it: then the one packed copy serves the
        # logits' gemm and the lookups (C ties them); else it would make the whole vocabulary
        # resident for the rows a prompt touches.
        if layer < 0 and slot == EMBD_SLOT and "output.weight" in self.gguf.tensors:
            return False
        return (self._repack and _kernels.slot_packable(layer, slot)
                and kernels.packs(t.type_name, data.shape[0]))

    def _put(self, layer: int, slot: int, name: str, t, data, cols: int, first_row: int = 0) -> None:
        """data (rows of t from first_row) into a slot, as a copy in the arena that takes the place
        of the file's pages in memory: repacked where the kernels have a packed gemm for it."""
        packed = self._packs(layer, slot, t, data)
        weights = self._in_arena(t, data, cols, first_row, packed)
        try:
            self.native.set_tensor(layer, slot, weights, t.type.id, cols, packed)
        except ValueError as e:
            raise GGUFError(f"tensor {name} ({t.type_name} {list(t.shape)}): {e}") from None

    def _in_arena(self, t, data, cols: int, first_row: int, packed: bool) -> np.ndarray:
        """data's copy in the arena's huge pages, repacked where `packed`, made a slice at a time
        with each slice's file pages dropped once copied, so that no matrix is ever held twice (a
        tied Gemma 3 embedding is 178 MB)."""
        out = self._arena.empty(data.shape)
        group = _kernels.pack_rows()
        step = max(1, REPACK_SLICE_BYTES // (data.shape[1] * group)) * group
        for r0 in range(0, data.shape[0], step):
            r1 = min(r0 + step, data.shape[0])
            if packed:
                kernels.repack(data[r0:r1], t.type_name, cols, out=out[r0:r1])
            else:
                out[r0:r1] = data[r0:r1]
            # From the part's first row: pages straddling a slice boundary go with the next slice.
            t.release(first_row * data.shape[1], r1 * data.shape[1])
        return out

    def _set(self, layer: int, slot: int, name: str) -> None:
        t, data, cols = self._rows(name)
        self._put(layer, slot, name, t, data, cols)

    def _set_fused(self, layer: int, name: str, parts: list[tuple[int, int, int]]) -> set[int]:
        """Row ranges of one fused tensor into slots: parts ((slot, first row, end row) ...)."""
        t, data, cols = self._rows(name)
        if data.shape[0] != parts[-1][2]:
            raise GGUFError(f"tensor {name} ({t.type_name} {list(t.shape)}) does not hold "
                            f"{' + '.join(str(r1 - r0) for _, r0, r1 in parts)} rows")
        for slot, r0, r1 in parts:
            self._put(layer, slot, name, t, data[r0:r1], cols, r0)
        return {slot for slot, _, _ in parts}
