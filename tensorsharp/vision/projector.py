"""llama.cpp's multimodal projector GGUF (mmproj: `clip.*` metadata, `v.*` and `mm.*` tensors) loaded
into the C image encoder (csrc/vision.c), and the search for the projector beside a model file.

Projector types: "gemma3" (SigLIP, average pooling to mm_tokens_per_image, soft embedding RMS norm,
one projection matrix) and "mlp" (LLaVA: mm.0, GELU, mm.2 over a SigLIP or CLIP ViT's patches).
The file is untrusted input: every key and tensor used is checked here, with a GGUFError that names
what is wrong, before the C side (which checks the shapes again) sees it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tensorsharp import _kernels, kernels
from tensorsharp.errors import GGUFError
from tensorsharp.gguf import GGUFFile, GGUFValueType, TensorInfo

# csrc/include/ts/vision.h: ts_vit_proj, ts_vit_act, ts_vit_layer_slot, ts_vit_global_slot.
PROJ_GEMMA3, PROJ_MLP = 0, 1
ACT_GELU, ACT_GELU_QUICK = 0, 1
LAYER_SLOTS = {  # slot -> tensor name inside v.blk.N.
    0: "ln1.weight", 1: "ln1.bias", 2: "attn_q.weight", 3: "attn_q.bias", 4: "attn_k.weight",
    5: "attn_k.bias", 6: "attn_v.weight", 7: "attn_v.bias", 8: "attn_out.weight", 9: "attn_out.bias",
    10: "ln2.weight", 11: "ln2.bias", 12: "ffn_up.weight", 13: "ffn_up.bias", 14: "ffn_down.weight",
    15: "ffn_down.bias",
}
REQUIRED_LAYER = ("ln1.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_out.weight",
                  "ln2.weight", "ffn_up.weight", "ffn_down.weight")
(G_PATCH, G_PATCH_B, G_POS, G_CLASS, G_PRE_LN_W, G_PRE_LN_B, G_POST_LN_W, G_POST_LN_B, G_MM_NORM_W,
 G_MM_PROJ, G_MM0, G_MM0_B, G_MM2, G_MM2_B) = range(14)
OPTIONAL_VECTORS = {G_PATCH_B: "v.patch_embd.bias", G_PRE_LN_W: "v.pre_ln.weight",
                    G_PRE_LN_B: "v.pre_ln.bias", G_POST_LN_W: "v.post_ln.weight",
                    G_POST_LN_B: "v.post_ln.bias"}

# llama.cpp pools gemma3's 64x64 patch grid by 4 unless clip.vision.projector.scale_factor says otherwise.
GEMMA3_DEFAULT_POOL = 4
_INT_TYPES = {GGUFValueType.UINT8, GGUFValueType.INT8, GGUFValueType.UINT16, GGUFValueType.INT16,
              GGUFValueType.UINT32, GGUFValueType.INT32, GGUFValueType.UINT64, GGUFValueType.INT64}
_FLOAT_TYPES = {GGUFValueType.FLOAT32, GGUFValueType.FLOAT64}


class _Meta:
    """Typed, checked access to the metadata of one file."""

    def __init__(self, f: GGUFFile):
        self.f = f

    def has(self, key: str) -> bool:
        return key in self.f.metadata

    def _type(self, key: str):
        return self.f.metadata_types[key]

    def int(self, key: str, default: int | None = None, lo: int = 1, hi: int = 1 << 20) -> int:
        if key not in self.f.metadata:
            if default is None:
                raise GGUFError(f"{self.f.path}: missing metadata key {key}")
            return default
        if self._type(key)[0] not in _INT_TYPES:
            raise GGUFError(f"{self.f.path}: metadata key {key} must be an integer")
        value = int(self.f.metadata[key])
        if not lo <= value <= hi:
            raise GGUFError(f"{self.f.path}: metadata key {key} = {value} is outside {lo}..{hi}")
        return value

    def float(self, key: str) -> float:
        if key not in self.f.metadata:
            raise GGUFError(f"{self.f.path}: missing metadata key {key}")
        if self._type(key)[0] not in _FLOAT_TYPES:
            raise GGUFError(f"{self.f.path}: metadata key {key} must be a float")
        return float(self.f.metadata[key])

    def bool(self, key: str, default: bool) -> bool:
        if key not in self.f.metadata:
            return default
        if self._type(key) != (GGUFValueType.BOOL,):
            raise GGUFError(f"{self.f.path}: metadata key {key} must be a bool")
        return bool(self.f.metadata[key])

    def str(self, key: str) -> str:
        if key not in self.f.metadata:
            raise GGUFError(f"{self.f.path}: missing metadata key {key}")
        if self._type(key) != (GGUFValueType.STRING,):
            raise GGUFError(f"{self.f.path}: metadata key {key} must be a string")
        return self.f.metadata[key]

    def floats3(self, key: str) -> tuple[float, float, float]:
        if key not in self.f.metadata:
            raise GGUFError(f"{self.f.path}: missing metadata key {key}")
        t = self._type(key)
        if t[0] is not GGUFValueType.ARRAY or t[1] not in _FLOAT_TYPES or len(self.f.metadata[key]) != 3:
            raise GGUFError(f"{self.f.path}: metadata key {key} must be an array of 3 floats")
        values = tuple(float(x) for x in self.f.metadata[key])
        if not all(np.isfinite(values)):
            raise GGUFError(f"{self.f.path}: metadata key {key} holds a non-finite value")
        return values

    def ints(self, key: str) -> list[int]:
        t = self._type(key)
        if t[0] is not GGUFValueType.ARRAY or t[1] not in _INT_TYPES:
            raise GGUFError(f"{self.f.path}: metadata key {key} must be an array of integers")
        return [int(x) for x in self.f.metadata[key]]


def projector_type(f: GGUFFile) -> str | None:
    """The vision projector type of a clip file (None when it has no vision encoder)."""
    md = f.metadata
    if md.get("general.architecture") != "clip" or md.get("clip.has_vision_encoder") is not True:
        return None
    # Files with both audio and vision encoders name each modality's projector separately.
    for key in ("clip.vision.projector_type", "clip.projector_type"):
        if isinstance(md.get(key), str):
            return md[key]
    return None


class VisionEncoder:
    """An image encoder + projector: normalized pixels -> embeddings in the text model's space."""

    projector_type: str
    image_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    n_tokens: int   # embeddings per image
    n_embd: int     # width of each embedding (the text model's n_embd)

    def __init__(self, f: GGUFFile, n_threads: int = 0):
        self._file = f  # the mmap must outlive the native encoder's weight views
        self.n_threads = n_threads
        meta = _Meta(f)
        if f.metadata.get("general.architecture") != "clip":
            raise GGUFError(f"{f.path}: not a multimodal projector (general.architecture is "
                            f"{f.metadata.get('general.architecture')!r}, not 'clip')")
        if not meta.bool("clip.has_vision_encoder", False):
            raise GGUFError(f"{f.path}: the projector has no vision encoder (clip.has_vision_encoder)")
        ptype = projector_type(f)
        if ptype not in ("gemma3", "mlp"):
            raise GGUFError(f"{f.path}: projector type {ptype!r} is not supported (supported: gemma3, mlp)")
        if meta.bool("clip.use_silu", False):
            raise GGUFError(f"{f.path}: SiLU vision encoders (clip.use_silu) are not supported")
        self.projector_type = ptype
        self.image_size = meta.int("clip.vision.image_size", hi=8192)
        patch = meta.int("clip.vision.patch_size", hi=1024)
        if self.image_size % patch:
            raise GGUFError(f"{f.path}: image size {self.image_size} is not a multiple of the patch size {patch}")
        side = self.image_size // patch
        n_embd = meta.int("clip.vision.embedding_length", hi=1 << 16)
        n_head = meta.int("clip.vision.attention.head_count", hi=1024)
        if n_embd % n_head:
            raise GGUFError(f"{f.path}: embedding length {n_embd} is not a multiple of the head count {n_head}")
        n_block = meta.int("clip.vision.block_count", hi=4096)
        eps = meta.float("clip.vision.attention.layer_norm_epsilon")
        if not 0.0 <= eps <= 1.0:
            raise GGUFError(f"{f.path}: clip.vision.attention.layer_norm_epsilon = {eps} is outside 0..1")
        self.image_mean = meta.floats3("clip.vision.image_mean")
        self.image_std = meta.floats3("clip.vision.image_std")
        if min(abs(s) for s in self.image_std) == 0.0:
            raise GGUFError(f"{f.path}: clip.vision.image_std has a zero")
        self._used: set[str] = set()

        has_class = "v.class_embd" in f.tensors
        pool, n_run = 0, n_block
        if ptype == "gemma3":
            pool = meta.int("clip.vision.projector.scale_factor", GEMMA3_DEFAULT_POOL, hi=side)
            if side % pool:
                raise GGUFError(f"{f.path}: {side} patches per side do not pool evenly by {pool}")
            if has_class:
                raise GGUFError(f"{f.path}: gemma3 projector with a class token (v.class_embd)")
        else:
            n_run = self._feature_layers(meta, n_block)

        n_ff = meta.int("clip.vision.feed_forward_length", hi=1 << 18)
        n_pos = side * side + has_class
        self._shape("v.patch_embd.weight", (patch, patch, 3, n_embd))
        self._shape("v.position_embd.weight", (n_embd, n_pos))
        if ptype == "gemma3":
            proj = self._tensor("mm.input_projection.weight")
            if len(proj.shape) != 2 or proj.shape[1] != n_embd:
                raise GGUFError(f"{f.path}: mm.input_projection.weight has shape {list(proj.shape)}, "
                                f"expected [n_embd_text, {n_embd}]")
            n_out, n_mm_ff = int(proj.shape[0]), 0
        else:
            mm0 = self._tensor("mm.0.weight")
            if len(mm0.shape) != 2 or mm0.shape[0] != n_embd:
                raise GGUFError(f"{f.path}: mm.0.weight has shape {list(mm0.shape)}, expected [{n_embd}, n]")
            n_mm_ff = int(mm0.shape[1])
            n_out = int(self._tensor("mm.2.weight").shape[1]) if "mm.2.weight" in f.tensors else n_mm_ff
        if meta.has("clip.vision.projection_dim"):
            dim = meta.int("clip.vision.projection_dim", hi=1 << 18)
            if dim != n_out:
                raise GGUFError(f"{f.path}: clip.vision.projection_dim = {dim} but the projector outputs {n_out}")
        self.n_embd = n_out

        gelu = meta.bool("clip.use_gelu", False)
        hp = {"image_size": self.image_size, "patch_size": patch, "n_embd": n_embd, "n_ff": n_ff,
              "n_head": n_head, "n_layer": n_run, "eps": eps,
              "ffn_act": ACT_GELU if gelu else ACT_GELU_QUICK, "has_class": int(has_class),
              "proj": PROJ_GEMMA3 if ptype == "gemma3" else PROJ_MLP, "pool": pool,
              "n_mm_ff": n_mm_ff, "n_out": n_out}
        try:
            self.native = _kernels.NativeVit(hp)
        except ValueError as e:
            raise GGUFError(f"{f.path}: {e}") from None
        self.n_tokens = self.native.n_tokens
        self._load_weights(ptype, n_embd, n_ff, n_run, n_block, n_mm_ff, n_out, has_class)
        try:
            self.native.finalize()
        except ValueError as e:
            raise GGUFError(f"{f.path}: {e}") from None

    def _feature_layers(self, meta: _Meta, n_block: int) -> int:
        """Blocks whose output feeds the mlp projector: llama.cpp takes the second to last by default."""
        if not meta.has("clip.vision.feature_layer"):
            return n_block - 1
        layers = meta.ints("clip.vision.feature_layer")
        if len(layers) != 1 or not 0 <= layers[0] <= n_block:
            raise GGUFError(f"{self._file.path}: clip.vision.feature_layer {layers} is not one layer in "
                            f"0..{n_block} (stacked feature layers are not supported)")
        return layers[0]

    def _tensor(self, name: str) -> TensorInfo:
        try:
            return self._file.tensors[name]
        except KeyError:
            raise GGUFError(f"{self._file.path}: projector lacks tensor {name}") from None

    def _shape(self, name: str, shape: tuple[int, ...]) -> TensorInfo:
        t = self._tensor(name)
        if tuple(t.shape) != shape:
            raise GGUFError(f"{self._file.path}: tensor {name} has shape {list(t.shape)}, expected {list(shape)}")
        return t

    def _matrix(self, layer: int, slot: int, name: str, shape: tuple[int, int]) -> None:
        """A weight kept in its GGUF blocks: shape (cols, rows) in GGUF order."""
        t = self._shape(name, shape)
        if t.type_name not in kernels.SUPPORTED_TYPES or not _kernels.has_dot(t.type.id):
            raise GGUFError(f"{self._file.path}: tensor {name} has type {t.type_name}, which has no kernels")
        self._set(layer, slot, name, np.asarray(t.data).reshape(shape[1], -1), t.type.id, shape[0])

    def _vector(self, layer: int, slot: int, name: str, n: int, rows: int = 1, offset: float = 0.0) -> None:
        """A norm, bias or embedding table, converted to f32 (rows, n)."""
        t = self._shape(name, (n,) if rows == 1 else (n, rows))
        if t.type_name not in ("F32", "F16", "BF16"):
            raise GGUFError(f"{self._file.path}: tensor {name} has type {t.type_name}; vectors must be F32, F16 or BF16")
        values = kernels.dequantize(np.asarray(t.data), t.type_name, n * rows) + np.float32(offset)
        if not np.all(np.isfinite(values)):
            raise GGUFError(f"{self._file.path}: tensor {name} holds non-finite values")
        self._set(layer, slot, name, values.reshape(rows, n).view(np.uint8), 0, n)

    def _set(self, layer: int, slot: int, name: str, data: np.ndarray, type_id: int, cols: int) -> None:
        self._used.add(name)
        try:
            self.native.set_tensor(layer, slot, np.ascontiguousarray(data), type_id, cols)
        except ValueError as e:
            raise GGUFError(f"{self._file.path}: tensor {name}: {e}") from None

    def _load_weights(self, ptype, n_embd, n_ff, n_run, n_block, n_mm_ff, n_out, has_class) -> None:
        f, E = self._file, n_embd
        # The conv kernel (n_embd, 3, patch, patch) is a matrix over (channel, y, x)-flattened patches.
        patch = self._tensor("v.patch_embd.weight")
        if patch.type_name not in ("F32", "F16", "BF16"):
            raise GGUFError(f"{f.path}: v.patch_embd.weight has type {patch.type_name}; it must be F32, F16 or BF16")
        self._set(-1, G_PATCH, patch.name, np.asarray(patch.data).reshape(E, -1), patch.type.id,
                  int(np.prod(patch.shape[:3])))
        n_pos = int(self._tensor("v.position_embd.weight").shape[1])
        self._vector(-1, G_POS, "v.position_embd.weight", E, rows=n_pos)
        if has_class:
            self._vector(-1, G_CLASS, "v.class_embd", E)
        for slot, name in OPTIONAL_VECTORS.items():
            if name in f.tensors:
                self._vector(-1, slot, name, E)
        for layer in range(n_run):
            self._load_block(layer, E, n_ff)
        if ptype == "gemma3":
            # The file keeps HF's (n_embd, n_embd_text) orientation; the kernels want rows = outputs.
            t = self._tensor("mm.input_projection.weight")
            if t.type_name not in ("F32", "F16", "BF16"):
                raise GGUFError(f"{f.path}: mm.input_projection.weight has type {t.type_name}; it must be F32, F16 or BF16")
            w = kernels.dequantize(np.asarray(t.data), t.type_name, t.n_elements).reshape(E, n_out).T
            w = np.ascontiguousarray(w.astype(np.float16) if t.type_name == "F16" else w)
            self._set(-1, G_MM_PROJ, t.name, w.view(np.uint8), 1 if t.type_name == "F16" else 0, E)
            # Stored as 1 + w: the converter folds Gemma's RMSNorm offset into the weight.
            self._vector(-1, G_MM_NORM_W, "mm.soft_emb_norm.weight", E)
        else:
            self._matrix(-1, G_MM0, "mm.0.weight", (E, n_mm_ff))
            self._vector(-1, G_MM0_B, "mm.0.bias", n_mm_ff)
            if "mm.2.weight" in f.tensors:
                self._matrix(-1, G_MM2, "mm.2.weight", (n_mm_ff, n_out))
                self._vector(-1, G_MM2_B, "mm.2.bias", n_out)
        # Blocks past the feature layer are legitimately unused; anything else would be silently ignored.
        skipped = {f"v.blk.{b}." for b in range(n_run, n_block)}
        unused = sorted(n for n in set(f.tensors) - self._used
                        if not any(n.startswith(p) for p in skipped))
        if unused:
            raise GGUFError(f"{f.path}: projector has tensors this engine does not support: "
                            f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}")

    def _load_block(self, layer: int, E: int, n_ff: int) -> None:
        f = self._file
        prefix = f"v.blk.{layer}."
        for name in REQUIRED_LAYER:
            self._tensor(prefix + name)
        up, down = "ffn_up", "ffn_down"
        # Some older files name fc1 ffn_down and fc2 ffn_up; llama.cpp swaps them back by shape.
        if n_ff != E and f.tensors[prefix + "ffn_down.weight"].shape[0] == E:
            up, down = down, up
        for slot, suffix in LAYER_SLOTS.items():
            kind, what = suffix.split(".")
            kind = {"ffn_up": up, "ffn_down": down}.get(kind, kind)
            name = prefix + f"{kind}.{what}"
            if name not in f.tensors:
                continue  # required ones were checked above; biases are optional
            if what == "bias" or kind in ("ln1", "ln2"):
                width = n_ff if (slot == 13) else E
                self._vector(layer, slot, name, width)
            elif slot == 12:
                self._matrix(layer, slot, name, (E, n_ff))
            elif slot == 14:
                self._matrix(layer, slot, name, (n_ff, E))
            else:
                self._matrix(layer, slot, name, (E, E))

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """pixels (3, image_size, image_size) float32, normalized -> (n_tokens, n_embd) float32."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if pixels.shape != (3, self.image_size, self.image_size):
            raise ValueError(f"pixels must have shape (3, {self.image_size}, {self.image_size}), "
                             f"not {pixels.shape}")
        out = np.empty((self.n_tokens, self.n_embd), dtype=np.float32)
        self.native.encode(pixels, out, self.n_threads)
        return out

    def __repr__(self) -> str:
        return (f"VisionEncoder({self._file.path!r}, {self.projector_type}, {self.image_size}px, "
                f"{self.n_tokens} tokens of {self.n_embd})")


def load_projector(path: str | os.PathLike[str], n_threads: int = 0) -> VisionEncoder:
    """The encoder of an mmproj GGUF file; GGUFError when the file is malformed or unsupported."""
    f = GGUFFile(path)
    try:
        return VisionEncoder(f, n_threads)
    except BaseException:
        f.close()
        raise


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def find_projector(model_path: str | os.PathLike[str]) -> Path | None:
    """A projector GGUF beside the model: a clip file with a vision encoder in the same folder.
    Names starting with "mmproj" win, then the longest shared stem with the model."""
    model = Path(model_path)
    stem = model.stem.lower()
    ranked = []
    for cand in sorted(model.parent.glob("*.gguf")):
        if cand.resolve() == model.resolve() or not cand.is_file():
            continue
        try:
            with GGUFFile(cand) as f:
                if projector_type(f) is None:
                    continue
        except (GGUFError, OSError):
            continue
        name = cand.stem.lower()
        is_mmproj = name.startswith("mmproj")
        rest = name[len("mmproj"):].lstrip("-_.") if is_mmproj else name
        ranked.append((is_mmproj, _shared_prefix(rest, stem), cand.name, cand))
    if not ranked:
        return None
    ranked.sort(key=lambda r: (not r[0], -r[1], r[2]))
    return ranked[0][3]
