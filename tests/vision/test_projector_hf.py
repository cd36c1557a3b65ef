"""The C image encoder + projector against HF transformers on the same random weights and pixels."""
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5")

from tensorsharp.testing.tiny_vision import hf_reference, write_tiny_projector  # noqa: E402
from tensorsharp.vision import load_projector  # noqa: E402

pytestmark = pytest.mark.hf

# Relative error: max |ours - HF| / max |HF| over the whole (n_tokens, n_embd) output.
# Float weights run in f32 throughout, so only summation order differs.
FLOAT_TOL = 1e-3
# Q8_0 weights multiply activations quantized to 8 bits, as llama.cpp's do.
Q8_TOL = 3e-2
MIN_COSINE = {"F32": 0.99999, "F16": 0.99999, "Q8_0": 0.999}

CASES = [
    ("gemma3", "siglip", "F32"), ("gemma3", "siglip", "F16"), ("gemma3", "siglip", "Q8_0"),
    ("mlp", "siglip", "F32"), ("mlp", "clip", "F32"), ("mlp", "clip", "F16"),
]


def rel_error(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def min_token_cosine(ours, ref):
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    return float(cos.min())


@pytest.mark.parametrize("ptype,vit,wtype", CASES)
def test_matches_hf(tmp_path, ptype, vit, wtype):
    info = write_tiny_projector(tmp_path / "mmproj.gguf", n_embd_text=128, projector_type=ptype, vit=vit,
                                weight_type=wtype, seed=3)
    enc = load_projector(info["path"])
    pixels = np.random.default_rng(7).standard_normal((3, enc.image_size, enc.image_size)).astype(np.float32)
    ours, ref = enc.encode(pixels), hf_reference(info)(pixels)
    assert ours.shape == ref.shape == (info["n_tokens"], 128)
    assert rel_error(ours, ref) < (Q8_TOL if wtype == "Q8_0" else FLOAT_TOL)
    assert min_token_cosine(ours, ref) > MIN_COSINE[wtype]


def test_gemma3_pools_to_configured_token_count(tmp_path):
    """A 16x16 patch grid pooled to 4 tokens per side: the pooling factor comes from the file."""
    info = write_tiny_projector(tmp_path / "mmproj.gguf", n_embd_text=64, image_size=128,
                                mm_tokens_per_image=16, seed=5)
    enc = load_projector(info["path"])
    assert enc.n_tokens == 16
    pixels = np.random.default_rng(2).uniform(-1, 1, (3, 128, 128)).astype(np.float32)
    assert rel_error(enc.encode(pixels), hf_reference(info)(pixels)) < FLOAT_TOL


def test_odd_head_dim_and_threads(tmp_path):
    """head_dim 24 (not a multiple of a SIMD width) and any thread count give HF's answer."""
    info = write_tiny_projector(tmp_path / "mmproj.gguf", n_embd_text=32, hidden_size=72,
                                num_attention_heads=3, intermediate_size=136, seed=9)
    pixels = np.random.default_rng(4).standard_normal((3, 64, 64)).astype(np.float32)
    ref = hf_reference(info)(pixels)
    for n_threads in (1, 2):
        enc = load_projector(info["path"], n_threads=n_threads)
        assert rel_error(enc.encode(pixels), ref) < FLOAT_TOL
