"""Loading mmproj files: metadata and tensors checked with clear errors, encoding, projector search."""
from pathlib import Path

import gguf
import numpy as np
import pytest

from tensorsharp.errors import GGUFError, TensorSharpError
from tensorsharp.testing.tiny_vision import write_tiny_projector
from tensorsharp.vision import ImageError, find_projector, load_projector

N_TEXT = 96


@pytest.fixture(scope="module")
def gemma3_file(tmp_path_factory):
    return write_tiny_projector(tmp_path_factory.mktemp("p") / "mmproj.gguf", n_embd_text=N_TEXT)["path"]


def rewrite(src: Path, dst: Path, *, set_keys=None, drop_keys=(), drop_tensors=(), tensors=None,
            rename=None) -> Path:
    """A copy of the GGUF src with metadata keys set or dropped and tensors dropped, replaced
    (tensors: name -> array in numpy order, written in its own dtype) or renamed (old -> new)."""
    set_keys, tensors, rename = set_keys or {}, tensors or {}, rename or {}
    r = gguf.GGUFReader(str(src))
    arch = set_keys.get("general.architecture", ("clip",))[0]
    w = gguf.GGUFWriter(str(dst), arch)
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop_keys or key in set_keys:
            continue
        sub = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), field.types[0], sub)
    for key, (value, *types) in set_keys.items():
        if key != "general.architecture":
            w.add_key_value(key, value, types[0], types[1] if len(types) > 1 else None)
    for t in r.tensors:
        if t.name in drop_tensors:
            continue
        if t.name in tensors:
            w.add_tensor(t.name, tensors.pop(t.name))
        else:
            w.add_tensor(rename.get(t.name, t.name), t.data, raw_dtype=t.tensor_type)
    for name, data in tensors.items():
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


def test_image_error_is_a_tensorsharp_error():
    assert issubclass(ImageError, TensorSharpError)


def test_loads_gemma3(gemma3_file):
    enc = load_projector(gemma3_file)
    assert (enc.projector_type, enc.image_size, enc.n_tokens, enc.n_embd) == ("gemma3", 64, 16, N_TEXT)
    assert enc.image_mean == (0.5, 0.5, 0.5) and enc.image_std == (0.5, 0.5, 0.5)


def test_loads_mlp(tmp_path):
    info = write_tiny_projector(tmp_path / "mmproj.gguf", n_embd_text=N_TEXT, projector_type="mlp", vit="clip")
    enc = load_projector(info["path"])
    assert (enc.projector_type, enc.n_tokens, enc.n_embd) == ("mlp", 64, N_TEXT)
    assert enc.image_mean == pytest.approx(info["image_mean"])


def test_encode_is_deterministic_across_threads(gemma3_file, rng):
    pixels = rng.standard_normal((3, 64, 64)).astype(np.float32)
    one = load_projector(gemma3_file, n_threads=1).encode(pixels)
    two = load_projector(gemma3_file, n_threads=2).encode(pixels)
    assert one.dtype == np.float32 and one.shape == (16, N_TEXT) and np.isfinite(one).all()
    assert np.array_equal(one, two)
    other = load_projector(gemma3_file).encode(pixels[:, ::-1].copy())
    assert not np.allclose(one, other)


def test_legacy_swapped_ffn_names(gemma3_file, tmp_path, rng):
    """Older converters named fc1 ffn_down and fc2 ffn_up; llama.cpp (and we) swap them back by shape."""
    swap = {}
    for layer in range(2):
        for what in ("weight", "bias"):
            up, down = f"v.blk.{layer}.ffn_up.{what}", f"v.blk.{layer}.ffn_down.{what}"
            swap.update({up: down, down: up})
    swapped = rewrite(gemma3_file, tmp_path / "swapped.gguf", rename=swap)
    pixels = rng.standard_normal((3, 64, 64)).astype(np.float32)
    assert np.array_equal(load_projector(swapped).encode(pixels), load_projector(gemma3_file).encode(pixels))


def test_encode_rejects_wrong_pixel_shape(gemma3_file):
    enc = load_projector(gemma3_file)
    with pytest.raises(ValueError, match="shape"):
        enc.encode(np.zeros((3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="shape"):
        enc.encode(np.zeros((64, 64, 3), np.float32))


F32 = gguf.GGUFValueType.FLOAT32
U32 = gguf.GGUFValueType.UINT32
STR = gguf.GGUFValueType.STRING
ARR = gguf.GGUFValueType.ARRAY

BAD_FILES = [
    (dict(drop_keys=("clip.vision.patch_size",)), "missing metadata key clip.vision.patch_size"),
    (dict(set_keys={"clip.vision.image_size": ("64", STR)}), "clip.vision.image_size must be an integer"),
    (dict(set_keys={"clip.vision.image_size": (60, U32)}), "not a multiple of the patch size"),
    (dict(set_keys={"clip.vision.attention.head_count": (5, U32)}), "not a multiple of the head count"),
    (dict(set_keys={"clip.vision.block_count": (0, U32)}), "outside 1..4096"),
    (dict(set_keys={"clip.projector_type": ("resampler", STR)}), "'resampler' is not supported"),
    (dict(set_keys={"general.architecture": ("llama",)}), "not a multimodal projector"),
    (dict(set_keys={"clip.has_vision_encoder": (False, gguf.GGUFValueType.BOOL)}), "no vision encoder"),
    (dict(set_keys={"clip.vision.image_std": ([0.5, 0.5], ARR, F32)}), "array of 3 floats"),
    (dict(set_keys={"clip.vision.projection_dim": (100, U32)}), "projection_dim = 100"),
    (dict(set_keys={"clip.vision.projector.scale_factor": (3, U32)}), "do not pool evenly"),
    (dict(drop_keys=("clip.vision.attention.layer_norm_epsilon",)), "layer_norm_epsilon"),
    (dict(drop_tensors=("v.blk.1.attn_q.weight",)), "lacks tensor v.blk.1.attn_q.weight"),
    (dict(drop_tensors=("mm.soft_emb_norm.weight",)), "lacks tensor mm.soft_emb_norm.weight"),
    (dict(tensors={"v.position_embd.weight": np.zeros((63, 64), np.float32)}), "v.position_embd.weight has shape"),
    (dict(tensors={"v.blk.0.ffn_up.weight": np.zeros((100, 64), np.float32)}), "v.blk.0.ffn_up.weight has shape"),
    (dict(tensors={"mm.input_projection.weight": np.zeros((32, N_TEXT), np.float32)}), "mm.input_projection.weight"),
    (dict(tensors={"v.blk.0.attn_q_norm.weight": np.ones(64, np.float32)}), "does not support: v.blk.0.attn_q_norm"),
    (dict(tensors={"v.blk.0.ln1.bias": np.full(64, np.inf, np.float32)}), "non-finite"),
]


@pytest.mark.parametrize("change,message", BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_bad_files_raise_gguf_error(gemma3_file, tmp_path, change, message):
    bad = rewrite(gemma3_file, tmp_path / "bad.gguf", **change)
    with pytest.raises(GGUFError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_projector(bad)


def test_truncated_file(gemma3_file, tmp_path):
    data = Path(gemma3_file).read_bytes()
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(data[: len(data) - 1000])
    with pytest.raises(GGUFError):
        load_projector(bad)


@pytest.mark.parametrize("name,message", [("v.blk.0.attn_q.weight", "type F64, which has no kernels"),
                                          ("v.patch_embd.weight", "type F64; it must be F32, F16 or BF16")])
def test_unsupported_tensor_type(gemma3_file, tmp_path, name, message):
    r = gguf.GGUFReader(str(gemma3_file))
    data = next(t for t in r.tensors if t.name == name).data.astype(np.float64)
    bad = rewrite(gemma3_file, tmp_path / "bad.gguf", tensors={name: data})
    with pytest.raises(GGUFError, match=message):
        load_projector(bad)


def write_text_gguf(path: Path) -> Path:
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_block_count(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_find_projector_prefers_mmproj_sharing_the_stem(tmp_path, gemma3_file):
    model = write_text_gguf(tmp_path / "gemma-3-4b-it-Q4_K_M.gguf")
    data = Path(gemma3_file).read_bytes()
    for name in ("mmproj-other-model-f16.gguf", "mmproj-gemma-3-4b-it-f16.gguf", "gemma-3-4b-vision.gguf"):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "mmproj-gemma-3-4b-it-broken.gguf").write_bytes(b"not a gguf at all")
    write_text_gguf(tmp_path / "mmproj-gemma-3-4b-it-textonly.gguf")
    assert find_projector(model) == tmp_path / "mmproj-gemma-3-4b-it-f16.gguf"


def test_find_projector_takes_any_vision_clip_file(tmp_path, gemma3_file):
    model = write_text_gguf(tmp_path / "model.gguf")
    (tmp_path / "vision-tower.gguf").write_bytes(Path(gemma3_file).read_bytes())
    assert find_projector(model) == tmp_path / "vision-tower.gguf"


def test_find_projector_none(tmp_path, gemma3_file):
    model = write_text_gguf(tmp_path / "model.gguf")
    write_text_gguf(tmp_path / "other.gguf")
    no_vision = rewrite(gemma3_file, tmp_path / "mmproj-audio.gguf",
                        set_keys={"clip.has_vision_encoder": (False, gguf.GGUFValueType.BOOL)})
    assert no_vision.exists()
    assert find_projector(model) is None
