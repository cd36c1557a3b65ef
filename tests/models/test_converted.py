"""Families as real downloads carry them: tiny random HF models converted by llama.cpp's own
convert_hf_to_gguf.py (tensorsharp.testing.llama_convert), run against HF transformers."""
import numpy as np
import pytest

import tensorsharp

pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5")
pytest.importorskip("sentencepiece")

from tensorsharp.engine.batch import Stepper  # noqa: E402
from tensorsharp.engine.kv_cache import KVCache  # noqa: E402
from tensorsharp.gguf import GGUFFile  # noqa: E402
from tensorsharp.models import load_model  # noqa: E402
from tensorsharp.testing import llama_convert, tiny_gguf  # noqa: E402
from tensorsharp.testing.reference import reference_logits  # noqa: E402

pytestmark = pytest.mark.hf

N_TOK = 40
N_CTX = N_TOK + 8
F32_TOL = 1e-3  # f32 weights: only the f16 KV cache separates us from HF


def _longrope(original: int, n_pairs: int) -> dict:
    """Config overrides of LongRoPE (per-pair factors between 1 and 6) for an original context."""
    ramp = np.linspace(0.0, 1.0, n_pairs)
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "original_max_position_embeddings": original,
            "short_factor": (1.0 + ramp).tolist(), "long_factor": (1.0 + 5.0 * ramp ** 2).tolist()}
    return dict(rope_parameters=rope, original_max_position_embeddings=original)


CASES = {
    # Llama 3.x layout: rope_freqs.weight divides the frequencies.
    "llama3": ("llama3", {}),
    # YaRN over an original context of 64: the first pairs keep their frequency, the last are
    # interpolated by 4, a ramp between, and cos/sin grow by 1 + 0.1 ln 4.
    "llama-yarn": ("llama", dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                                                  "original_max_position_embeddings": 64})),
    # Even layers slide over 8 positions, a fifth of the prompt.
    "gemma2": ("gemma2", {}),
    "phi3": ("phi3", {}),
    # Phi-4-mini layout: half of each head rotates, LongRoPE, tied output. The converter sizes the
    # attention factor by max_position_embeddings / original; HF and llama.cpp both take the short
    # factors while the context (N_CTX) stays within the original one, the long ones beyond it.
    "phi3-longrope-short": ("phi3", dict(partial_rotary_factor=0.5, tie_word_embeddings=True, **_longrope(64, 8))),
    "phi3-longrope-long": ("phi3", dict(partial_rotary_factor=0.5, tie_word_embeddings=True, **_longrope(32, 8))),
    "smollm3": ("smollm3", {}),
    "granite": ("granite", {}),
    "olmo2": ("olmo2", {}),
    # GGUF architecture olmo2 with three sliding layers (window 8) per global one.
    "olmo3": ("olmo3", {}),
    # Routed FFN: a batch groups its tokens by expert, a single token reads its two experts.
    "qwen3moe": ("qwen3moe", {}),
    "qwen2moe": ("qwen2moe", {}),
}
# Q8_0 files as the converter quantizes them (fused tensors cut between quantized rows), held to
# test_hf_oracle's Q8_0 bounds: relative RMS error vs HF, top-1 agreement.
Q8_CASES = ["llama3", "gemma2", "phi3-longrope-long", "olmo3"]  # MoE families: test_moe, per token
Q8_RMS, Q8_TOP1 = 6e-2, 0.9
# The numpy reference on the same Q8_0 weights differs from the native pass by its 8-bit
# activations only (test_hf_oracle's bound).
Q8_REF_TOL = 4e-2


@pytest.fixture(scope="module")
def cases():
    built = {}

    def get(name):
        if name not in built:
            arch, overrides = CASES[name]
            seed = list(CASES).index(name)
            model = tiny_gguf.random_model(tiny_gguf.tiny_config(arch, **overrides), seed=seed)
            tokens = np.random.default_rng(seed).integers(0, model.config.vocab_size, N_TOK)
            built[name] = (model, tokens, tiny_gguf.hf_logits(model, tokens), llama_convert.convert(model))
        return built[name]
    return get


def _load(path):
    model = load_model(GGUFFile(path))
    model.use_context(N_CTX)
    return model


def _rel(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("name", CASES)
def test_batch_and_token_by_token_match_hf(cases, name):
    _, tokens, want, path = cases(name)
    model = _load(path)
    n = len(tokens)
    batch = Stepper(model, KVCache(model, n_ctx=N_CTX)).step(tokens, np.arange(n), np.zeros(n), np.arange(n))
    stepper = Stepper(model, KVCache(model, n_ctx=N_CTX), n_batch=1)
    single = np.concatenate([stepper.step([t], [i], [0], [0]) for i, t in enumerate(tokens)])
    assert _rel(batch, want) <= F32_TOL
    assert _rel(single, want) <= F32_TOL
    assert _rel(single, batch) <= F32_TOL


@pytest.mark.parametrize("name", CASES)
def test_two_interleaved_sequences_match_hf(cases, name):
    hf_model, tokens, want, path = cases(name)
    other = tokens[::-1].copy()
    want_other = tiny_gguf.hf_logits(hf_model, other)
    got, got_other = tiny_gguf.interleaved_logits(_load(path), tokens, other, N_CTX)
    assert _rel(got, want) <= F32_TOL
    assert _rel(got_other, want_other) <= F32_TOL


@pytest.mark.parametrize("name", Q8_CASES)
def test_q8_0_file_tracks_hf(cases, name):
    hf_model, tokens, want, _ = cases(name)
    model = _load(llama_convert.convert(hf_model, "q8_0"))
    n = len(tokens)
    got = Stepper(model, KVCache(model, n_ctx=N_CTX)).step(tokens, np.arange(n), np.zeros(n), np.arange(n))
    assert np.sqrt(np.mean((got - want) ** 2) / np.mean(want ** 2)) <= Q8_RMS
    assert np.mean(got.argmax(axis=1) == want.argmax(axis=1)) >= Q8_TOP1
    assert _rel(got, reference_logits(model, tokens)) <= Q8_REF_TOL


@pytest.mark.parametrize("name", CASES)
def test_reference_forward_matches_hf_on_the_converted_file(cases, name):
    # The numpy oracle of the native pass reads the same file the same way (fused tensors,
    # factors, scales) and lands on HF.
    _, tokens, want, path = cases(name)
    assert _rel(reference_logits(_load(path), tokens), want) <= F32_TOL


def test_longrope_factors_follow_the_context(cases):
    # The long factors only differ from the short ones past the original context (32).
    _, tokens, _, path = cases("phi3-longrope-long")
    model = load_model(GGUFFile(path))
    n = len(tokens)

    def run(n_ctx):
        model.use_context(n_ctx)
        return Stepper(model, KVCache(model, n_ctx=N_CTX)).step(tokens, np.arange(n), np.zeros(n), np.arange(n))

    assert _rel(run(32), run(N_CTX)) > 1e-2


def test_public_model_takes_the_factors_of_its_context(cases):
    # N_CTX exceeds this file's original context (32): tensorsharp.Model must switch to the long
    # factors, as HF does for a sequence that long.
    _, tokens, want, path = cases("phi3-longrope-long")
    m = tensorsharp.Model(str(path), n_ctx=N_CTX)
    assert _rel(m.eval(tokens, logits_all=True), want) <= F32_TOL
