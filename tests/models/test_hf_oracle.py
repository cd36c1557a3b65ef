"""Every architecture against HF transformers on the same tiny random weights, via GGUF files
written the way llama.cpp's converter writes them (tensorsharp.testing.tiny_gguf)."""
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5")

import tensorsharp  # noqa: E402
from tensorsharp.engine.batch import Stepper  # noqa: E402
from tensorsharp.engine.kv_cache import KVCache  # noqa: E402
from tensorsharp.gguf import GGUFFile  # noqa: E402
from tensorsharp.models import load_model  # noqa: E402
from tensorsharp.testing import tiny_gguf  # noqa: E402
from tensorsharp.testing.reference import reference_logits  # noqa: E402

pytestmark = pytest.mark.hf

N_TOK = 40
# f32 weights: only the f16 KV cache separates us from HF.
F32_TOL = 1e-3

_SWA_ROPE = {"rope_type": "default", "rope_theta": 10000.0}
CASES = {
    "llama": ("llama", {}),
    # head_dim wider than hidden/heads, one KV head, tied output, linear RoPE scaling.
    "llama-linear-rope": ("llama", dict(head_dim=64, num_key_value_heads=1, tie_word_embeddings=True,
                                        rope_parameters={"rope_type": "linear", "factor": 4.0,
                                                         "rope_theta": 10000.0})),
    "qwen2": ("qwen2", {}),
    "qwen3": ("qwen3", {}),
    # Five sliding layers (window 8, shorter than the sequence) and one global layer.
    "gemma3": ("gemma3", {}),
    "gemma3-softcap-linear-rope": ("gemma3", dict(
        final_logit_softcapping=30.0,
        rope_parameters={"sliding_attention": _SWA_ROPE,
                         "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}})),
}

# Quantized weights: the native forward pass against the numpy reference on the same dequantized
# weights (they differ by our 8-bit activations), and against HF (they differ by the weights).
QUANT = {
    # type: (max rel. error vs reference, max rel. RMS error vs HF, min top-1 agreement with HF)
    "F16": (1e-3, 5e-3, 0.95),
    "Q8_0": (4e-2, 6e-2, 0.9),
    # Random weights give flat logits: 4-bit noise flips close top-1 calls, so only some agree.
    "Q4_0": (4e-2, 0.4, 0.4),
}


class Oracle:
    """HF models, their logits and GGUF files, built once per module."""

    def __init__(self, directory):
        self.dir = directory
        self.hf = {}
        self.files = {}

    def case(self, name):
        """(HF model, tokens, HF logits (N_TOK, n_vocab)) of a case."""
        if name not in self.hf:
            arch, overrides = CASES[name]
            model = tiny_gguf.random_model(tiny_gguf.tiny_config(arch, **overrides), seed=len(self.hf))
            tokens = np.random.default_rng(len(self.hf)).integers(0, model.config.vocab_size, N_TOK)
            self.hf[name] = (model, tokens, tiny_gguf.hf_logits(model, tokens))
        return self.hf[name]

    def path(self, name, weight_type="F32"):
        if (name, weight_type) not in self.files:
            self.files[name, weight_type] = tiny_gguf.write_gguf(
                self.case(name)[0], self.dir / f"{name}-{weight_type}.gguf", weight_type)
        return self.files[name, weight_type]

    def transformer(self, name, weight_type="F32"):
        return load_model(GGUFFile(self.path(name, weight_type)))


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    return Oracle(tmp_path_factory.mktemp("tiny_gguf"))


def _rel(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def _all_positions(model, tokens):
    stepper = Stepper(model, KVCache(model, n_ctx=N_TOK + 8))
    n = len(tokens)
    return stepper.step(tokens, np.arange(n), np.zeros(n), np.arange(n))


@pytest.mark.parametrize("name", CASES)
def test_f32_logits_of_one_batch_match_hf(oracle, name):
    _, tokens, want = oracle.case(name)
    got = _all_positions(oracle.transformer(name), tokens)
    assert _rel(got, want) <= F32_TOL


@pytest.mark.parametrize("name", CASES)
def test_f32_token_by_token_decode_matches_hf(oracle, name):
    _, tokens, want = oracle.case(name)
    model = oracle.transformer(name)
    stepper = Stepper(model, KVCache(model, n_ctx=N_TOK + 8), n_batch=1)
    got = np.concatenate([stepper.step([t], [i], [0], [0]) for i, t in enumerate(tokens)])
    assert _rel(got, want) <= F32_TOL


@pytest.mark.parametrize("name", ["qwen3", "gemma3"])
def test_two_sequences_in_shared_chunked_batches_match_hf(oracle, name):
    hf_model, tokens, want = oracle.case(name)
    other = tokens[::-1].copy()
    want_other = tiny_gguf.hf_logits(hf_model, other)
    # The sequences' rows interleave, so every row attends to its own sequence only.
    got, got_other = tiny_gguf.interleaved_logits(oracle.transformer(name), tokens, other, N_TOK)
    assert _rel(got, want) <= F32_TOL
    assert _rel(got_other, want_other) <= F32_TOL


@pytest.mark.parametrize("weight_type", QUANT)
@pytest.mark.parametrize("name", CASES)
def test_quantized_weights_match_reference_and_track_hf(oracle, name, weight_type):
    ref_tol, hf_rms_tol, min_top1 = QUANT[weight_type]
    _, tokens, want = oracle.case(name)
    model = oracle.transformer(name, weight_type)
    got = _all_positions(model, tokens)
    assert _rel(got, reference_logits(model, tokens)) <= ref_tol
    rms = np.sqrt(np.mean((got - want) ** 2) / np.mean(want ** 2))
    assert rms <= hf_rms_tol
    assert np.mean(got.argmax(axis=1) == want.argmax(axis=1)) >= min_top1


def test_public_model_loads_tiny_file_with_its_tokenizer(oracle):
    _, tokens, want = oracle.case("qwen2")
    m = tensorsharp.Model(str(oracle.path("qwen2")), n_ctx=64)
    assert _rel(m.eval(tokens, logits_all=True), want) <= F32_TOL
    text = "the cat sat on a mat"
    ids = m.tokenize(text, add_special=False)
    assert len(ids) < len(text.encode())  # the letter merges apply
    assert m.detokenize(ids) == text
