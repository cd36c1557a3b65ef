"""bert and nomic-bert: tiny random HF encoders converted by llama.cpp's converter (with
sentence-transformers' pooling) embed as HF does, one sequence or many per pass."""
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5")

import torch  # noqa: E402

from tensorsharp.errors import GGUFError  # noqa: E402
from tensorsharp.gguf import GGUFFile  # noqa: E402
from tensorsharp.models import is_encoder, load_encoder, load_model  # noqa: E402
from tensorsharp.testing import tiny_encoders  # noqa: E402

pytestmark = pytest.mark.hf

COSINE_TOL = 1e-3   # the bound on cosine distance from HF


@pytest.fixture(scope="module", params=["bert", "nomic-bert"])
def encoder(request):
    """(HF model, converted file, the file's pooling): bert pools the [CLS] row, nomic-bert the mean."""
    model, path = tiny_encoders.converted(request.param)
    return model, path, tiny_encoders.FAMILY_POOLING[request.param]


def hf_states(model, tokens) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.as_tensor([list(tokens)], dtype=torch.long))
    return out.last_hidden_state[0].double().numpy()


def cosine_distance(a, b) -> float:
    return 1.0 - float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def prompts(n_vocab: int) -> list[list[int]]:
    rng = np.random.default_rng(4)
    return [[101, *rng.integers(1000, n_vocab, n - 2).tolist(), 102] for n in (5, 17, 40)]


def test_embeddings_match_hf(encoder):
    model, path, mode = encoder
    gguf = GGUFFile(path)
    enc = load_encoder(gguf)
    assert enc.hparams.pooling == mode
    seqs = prompts(model.config.vocab_size)
    for seq, states in zip(seqs, enc.encode(seqs, n_threads=2)):
        ref = hf_states(model, seq)
        assert states.shape == ref.shape
        for pooling in ("cls", "mean"):
            want = ref[0] if pooling == "cls" else ref.mean(0)
            assert cosine_distance(enc.pool(states, pooling), want) < COSINE_TOL
        # Row by row too: a position or a sequence boundary off by one would show here first.
        assert max(cosine_distance(a, b) for a, b in zip(states, ref)) < COSINE_TOL


@pytest.mark.parametrize("family, outtype", [("bert", "f16"), ("nomic-bert", "q8_0")])
def test_f16_and_quantized_weights_stay_near_hf(family, outtype):
    """F16 matrices (their own tiled product) and Q8_0 ones (quantized activations, the fused QKV
    cut into row ranges of blocks)."""
    model, path = tiny_encoders.converted(family, outtype)
    gguf = GGUFFile(path)
    assert gguf.tensors["blk.0.attn_output.weight"].type_name == outtype.upper()
    enc = load_encoder(gguf)
    seqs = prompts(model.config.vocab_size)
    for seq, states in zip(seqs, enc.encode(seqs)):
        assert max(cosine_distance(a, b) for a, b in zip(states, hf_states(model, seq))) < COSINE_TOL


def test_a_batch_equals_each_sequence_alone(encoder):
    model, path, _ = encoder
    enc = load_encoder(GGUFFile(path))
    seqs = prompts(model.config.vocab_size)
    together = enc.encode(seqs)
    for seq, states in zip(seqs, together):
        assert np.abs(enc.encode([seq])[0] - states).max() < 1e-5


def test_bad_inputs_are_refused(encoder):
    model, path, _ = encoder
    enc = load_encoder(GGUFFile(path))
    with pytest.raises(ValueError, match="out of range"):
        enc.encode([[101, model.config.vocab_size]])
    with pytest.raises(ValueError, match="longer than the context"):
        enc.encode([[101] * (enc.hparams.n_ctx_train + 1)])


def test_encoders_are_not_decoders(encoder):
    _, path, _ = encoder
    gguf = GGUFFile(path)
    assert is_encoder(gguf.metadata)
    with pytest.raises(GGUFError, match="only embeds"):
        load_model(gguf)


def test_a_tensor_it_would_not_apply_is_refused(encoder, tmp_path):
    """A file with a classifier head (or any tensor the encoder ignores) is refused by name."""
    import gguf as gguf_py

    _, path, _ = encoder
    src = gguf_py.GGUFReader(path)
    out = tmp_path / "extra.gguf"
    w = gguf_py.GGUFWriter(out, src.fields["general.architecture"].contents())
    for name, field in src.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = field.contents()
        if field.types[0] == gguf_py.GGUFValueType.ARRAY:
            w.add_array(name, value)
        else:
            w.add_key_value(name, value, field.types[0])
    for t in src.tensors:
        w.add_tensor(t.name, np.asarray(t.data))
    w.add_tensor("cls.output.weight", np.zeros((2, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(GGUFError, match="cls.output.weight"):
        load_encoder(GGUFFile(out))
