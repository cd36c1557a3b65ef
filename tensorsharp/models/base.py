"""Shared base of the decoder architectures: GGUF metadata and weights into the native model."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tensorsharp import _kernels
from tensorsharp.errors import GGUFError

# Slot numbers of csrc/include/ts/model.h (ts_weight_slot / ts_global_slot) and the GGUF tensor
# names llama.cpp's converter gives them.
LAYER_SLOTS = {
    0: "attn_norm.weight", 1: "attn_q.weight", 2: "attn_k.weight", 3: "attn_v.weight",
    4: "attn_q.bias", 5: "attn_k.bias", 6: "attn_v.bias", 7: "attn_q_norm.weight",
    8: "attn_k_norm.weight", 9: "attn_output.weight", 10: "post_attention_norm.weight",
    11: "ffn_norm.weight", 12: "ffn_gate.weight", 13: "ffn_up.weight", 14: "ffn_down.weight",
    15: "post_ffw_norm.weight",
}
GLOBAL_SLOTS = {0: "token_embd.weight", 1: "output_norm.weight", 2: "output.weight"}
FFN_SILU, FFN_GELU = 0, 1


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
    extra: dict = field(default_factory=dict)

    def native(self) -> dict:
        return {
            "n_layer": self.n_layer, "n_embd": self.n_embd, "n_head": self.n_head,
            "n_head_kv": self.n_head_kv, "head_dim": self.head_dim, "n_ff": self.n_ff,
            "n_vocab": self.n_vocab, "n_rot": self.n_rot, "rope_neox": int(self.rope_neox),
            "norm_eps": self.norm_eps, "ffn_act": self.ffn_act, "embd_scale": self.embd_scale,
            "attn_scale": self.attn_scale or 1.0 / math.sqrt(self.head_dim),
            "attn_softcap": self.attn_softcap, "final_softcap": self.final_softcap,
        }


class Architecture:
    """Reads one GGUF `general.architecture`; subclasses override what differs."""

    name = ""
    rope_neox = True
    ffn_act = FFN_SILU
    required_layer_tensors = ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                              "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight",
                              "ffn_up.weight", "ffn_down.weight")

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
        scale = 1.0
        if self.md.get(f"{self.name}.rope.scaling.type", "none") == "linear":
            scale = 1.0 / float(self.key("rope.scaling.factor", 1.0))
        return HParams(
            n_layer=int(self.key("block_count")),
            n_embd=n_embd,
            n_head=n_head,
            n_head_kv=int(self.key("attention.head_count_kv", n_head)),
            head_dim=head_dim,
            n_ff=int(self.key("feed_forward_length")),
            n_vocab=n_vocab,
            n_rot=int(self.key("rope.dimension_count", head_dim)),
            n_ctx_train=int(self.key("context_length")),
            norm_eps=float(self.key("attention.layer_norm_rms_epsilon")),
            rope_base=float(self.key("rope.freq_base", 10000.0)),
            rope_scale=scale,
            rope_neox=self.rope_neox,
            ffn_act=self.ffn_act,
            sliding_window=int(self.md.get(f"{self.name}.attention.sliding_window", 0) or 0),
        )

    def layer_params(self, hp: HParams, layer: int) -> tuple[float, float, int]:
        """(rope_base, rope_scale, sliding window or 0) of one layer."""
        return hp.rope_base, hp.rope_scale, 0


class Transformer:
    """A loaded model: hyper-parameters and the native weights over the file's mmap."""

    def __init__(self, gguf, arch_cls: type[Architecture]):
        self.gguf = gguf  # keeps the mmap alive as long as the model
        self.arch = arch_cls(gguf.metadata)
        self._used: set[str] = set()
        emb = self._tensor("token_embd.weight")
        self.hparams = hp = self.arch.hparams(n_vocab=int(emb.shape[1]))
        self.native = _kernels.NativeModel(hp.native())
        for layer in range(hp.n_layer):
            self.native.set_layer_params(layer, *self.arch.layer_params(hp, layer))
            for slot, suffix in LAYER_SLOTS.items():
                name = f"blk.{layer}.{suffix}"
                if name in gguf.tensors:
                    self._set(layer, slot, name)
                elif suffix in self.arch.required_layer_tensors:
                    raise GGUFError(f"{self.arch.name} model lacks tensor {name}")
        for slot, name in GLOBAL_SLOTS.items():
            if name in gguf.tensors:
                self._set(-1, slot, name)
        unused = sorted(set(gguf.tensors) - self._used)
        if unused:
            # A tensor we do not apply (a bias, rope_freqs, ...) would silently change the result.
            raise GGUFError(f"{self.arch.name} model has tensors this engine does not support: "
                            f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}")
        self.native.finalize()

    def _tensor(self, name: str):
        try:
            return self.gguf.tensors[name]
        except KeyError:
            raise GGUFError(f"model lacks tensor {name}") from None

    def _set(self, layer: int, slot: int, name: str) -> None:
        t = self._tensor(name)
        self._used.add(name)
        cols = int(t.shape[0])
        rows = int(np.prod(t.shape[1:], dtype=np.int64)) if len(t.shape) > 1 else 1
        data = np.asarray(t.data).reshape(rows, -1)
        try:
            self.native.set_tensor(layer, slot, data, t.type.id, cols)
        except ValueError as e:
            raise GGUFError(f"tensor {name} ({t.type_name} {list(t.shape)}): {e}") from None
