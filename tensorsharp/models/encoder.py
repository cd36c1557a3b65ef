"""Shared base of the encoder architectures (BERT family): GGUF metadata and weights into the
native encoder, a batch of whole sequences per pass, and the pooling their files name."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tensorsharp import _kernels
from tensorsharp.errors import GGUFError

# Slot numbers of csrc/include/ts/encoder.h (ts_enc_global_slot / ts_enc_layer_slot) by the GGUF
# tensor names llama.cpp's converter gives them.
GLOBAL_SLOTS = {"token_embd.weight": 0, "position_embd.weight": 1, "token_types.weight": 2,
                "token_embd_norm.weight": 3, "token_embd_norm.bias": 4}
LAYER_SLOTS = {
    "attn_q.weight": 0, "attn_q.bias": 1, "attn_k.weight": 2, "attn_k.bias": 3, "attn_v.weight": 4,
    "attn_v.bias": 5, "attn_output.weight": 6, "attn_output.bias": 7, "attn_output_norm.weight": 8,
    "attn_output_norm.bias": 9, "ffn_up.weight": 10, "ffn_up.bias": 11, "ffn_gate.weight": 12,
    "ffn_down.weight": 13, "ffn_down.bias": 14, "layer_output_norm.weight": 15, "layer_output_norm.bias": 16,
}
FFN_GELU, FFN_SWIGLU = 0, 1
# GGUF pooling_type values and what the engine calls them; 0 (none) and rank are not embeddings.
POOLINGS = {1: "mean", 2: "cls", 3: "last"}


@dataclass
class EncoderHParams:
    n_layer: int
    n_embd: int
    n_head: int
    n_ff: int
    n_vocab: int
    n_ctx_train: int
    n_pos: int          # rows of the learned position table; 0: RoPE
    n_types: int        # rows of the token-type table; 0: none
    norm_eps: float
    ffn: int
    rope_base: float
    pooling: str

    def native(self) -> dict:
        return {"n_embd": self.n_embd, "n_ff": self.n_ff, "n_head": self.n_head, "n_layer": self.n_layer,
                "n_vocab": self.n_vocab, "n_pos": self.n_pos, "n_types": self.n_types, "n_ctx": self.n_ctx_train,
                "eps": self.norm_eps, "ffn": self.ffn, "rope_base": self.rope_base}


class EncoderArchitecture:
    """Reads one encoder `general.architecture`; subclasses say what differs."""

    name = ""
    ffn = FFN_GELU
    learned_positions = True
    # A fused tensor the converter writes, cut into equal row thirds of these slots at load time.
    fused_qkv = "attn_qkv.weight"

    def __init__(self, metadata: dict):
        self.md = metadata

    def key(self, suffix: str, default=None):
        value = self.md.get(f"{self.name}.{suffix}", default)
        if value is None:
            raise GGUFError(f"missing metadata key {self.name}.{suffix}")
        return value

    def hparams(self, tensors) -> EncoderHParams:
        if self.md.get(f"{self.name}.attention.causal", False):
            raise GGUFError(f"{self.name} model with causal attention is not supported")
        kind = int(self.md.get(f"{self.name}.pooling_type", 0) or 0)
        if kind not in POOLINGS:
            raise GGUFError(f"{self.name} model with pooling type {kind} is not supported (mean, cls or last)")
        n_embd = int(self.key("embedding_length"))
        rows = {name: int(np.prod(t.shape[1:], dtype=np.int64)) for name, t in tensors.items()
                if name in ("token_embd.weight", "position_embd.weight", "token_types.weight")}
        if "token_embd.weight" not in rows:
            raise GGUFError(f"{self.name} model lacks tensor token_embd.weight")
        n_ctx = int(self.key("context_length"))
        return EncoderHParams(
            n_layer=int(self.key("block_count")), n_embd=n_embd, n_head=int(self.key("attention.head_count")),
            n_ff=int(self.key("feed_forward_length")), n_vocab=rows["token_embd.weight"],
            n_ctx_train=min(n_ctx, rows.get("position_embd.weight", n_ctx)) if self.learned_positions else n_ctx,
            n_pos=rows.get("position_embd.weight", 0) if self.learned_positions else 0,
            n_types=rows.get("token_types.weight", 0), norm_eps=float(self.key("attention.layer_norm_epsilon")),
            ffn=self.ffn, rope_base=float(self.key("rope.freq_base", 10000.0)) if not self.learned_positions else 0.0,
            pooling=POOLINGS[kind])


class Encoder:
    """A loaded encoder: hyper-parameters and the native weights over the file's mmap."""

    def __init__(self, gguf, arch_cls: type[EncoderArchitecture]):
        self.gguf = gguf  # keeps the mmap alive as long as the model
        self.arch = arch_cls(gguf.metadata)
        self.hparams = hp = self.arch.hparams(gguf.tensors)
        if not self.arch.learned_positions and "position_embd.weight" in gguf.tensors:
            raise GGUFError(f"{self.arch.name} model has tensors this engine does not support: position_embd.weight")
        try:
            self.native = _kernels.NativeEncoder(hp.native())
        except ValueError as e:
            raise GGUFError(f"{self.arch.name} model: {e}") from None
        used = set()
        for name, slot in GLOBAL_SLOTS.items():
            if name in gguf.tensors:
                self._put(-1, slot, name, *self._rows(name))
                used.add(name)
        for layer in range(hp.n_layer):
            fused = f"blk.{layer}.{self.arch.fused_qkv}"
            if fused in gguf.tensors:
                t, data, cols = self._rows(fused)
                if data.shape[0] != 3 * hp.n_embd:
                    raise GGUFError(f"tensor {fused} ({t.type_name} {list(t.shape)}) does not hold "
                                    f"3 x {hp.n_embd} rows")
                for i, part in enumerate(("attn_q.weight", "attn_k.weight", "attn_v.weight")):
                    self._put(layer, LAYER_SLOTS[part], fused, t, data[i * hp.n_embd:(i + 1) * hp.n_embd], cols)
                used.add(fused)
            for suffix, slot in LAYER_SLOTS.items():
                name = f"blk.{layer}.{suffix}"
                if name in gguf.tensors:
                    self._put(layer, slot, name, *self._rows(name))
                    used.add(name)
        unused = sorted(set(gguf.tensors) - used)
        if unused:
            # A tensor we do not apply (a classifier head, an MoE layer, ...) would silently change the result.
            raise GGUFError(f"{self.arch.name} model has tensors this engine does not support: "
                            f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}")
        try:
            self.native.finalize()
        except ValueError as e:
            raise GGUFError(f"{self.arch.name} model: {e}") from None

    def _rows(self, name: str):
        t = self.gguf.tensors[name]
        cols = int(t.shape[0])
        rows = int(np.prod(t.shape[1:], dtype=np.int64)) if len(t.shape) > 1 else 1
        return t, np.asarray(t.data).reshape(rows, -1), cols

    def _put(self, layer: int, slot: int, name: str, t, data, cols: int) -> None:
        try:
            self.native.set_tensor(layer, slot, np.ascontiguousarray(data), t.type.id, cols)
        except ValueError:
            raise GGUFError(f"tensor {name} ({t.type_name} {list(t.shape)}) does not fit the "
                            f"{self.arch.name} model's shapes") from None

    def encode(self, sequences: list[list[int]], n_threads: int = 0) -> list[np.ndarray]:
        """Final hidden states (len, n_embd) of each sequence, all run in one pass."""
        lengths = [len(s) for s in sequences]
        ids = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
        if len(ids) and (ids.min() < 0 or ids.max() >= self.hparams.n_vocab):   # before int32 could wrap one
            raise ValueError(f"encode: a token id out of range (vocabulary of {self.hparams.n_vocab})")
        tokens = ids.astype(np.int32)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
        hidden = np.empty((len(tokens), self.hparams.n_embd), dtype=np.float32)
        self.native.encode(tokens, starts, hidden, n_threads)
        return np.split(hidden, np.cumsum(lengths)[:-1])

    def pool(self, states: np.ndarray, pooling: str | None = None) -> np.ndarray:
        """One sequence's states pooled (the file's pooling unless named), not normalised."""
        pooling = pooling or self.hparams.pooling
        if pooling == "mean":
            return states.mean(axis=0, dtype=np.float64).astype(np.float32)
        return states[0 if pooling == "cls" else -1].copy()
