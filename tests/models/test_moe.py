"""Mixture-of-experts families (tiny random HF Qwen3-MoE and Qwen2-MoE converted by llama.cpp's
convert_hf_to_gguf.py): a token reads only the experts its router picks, quantized files, refusals.
Their agreement with HF in f32 is in test_converted."""
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5")

import torch  # noqa: E402

from tensorsharp.engine.batch import Stepper  # noqa: E402
from tensorsharp.errors import GGUFError  # noqa: E402
from tensorsharp.engine.kv_cache import KVCache  # noqa: E402
from tensorsharp.gguf import GGUFFile  # noqa: E402
from tensorsharp.models import load_model  # noqa: E402
from tensorsharp.testing import llama_convert, tiny_gguf  # noqa: E402
from tensorsharp.testing.reference import reference_logits  # noqa: E402

pytestmark = pytest.mark.hf

TOKENS = [17, 4242, 901]
# test_converted's Q8_0 bounds, per token: rounding moves a token whose router nearly ties onto
# other experts, a jump no bound on the whole prompt's error would survive.
Q8_RMS, Q8_TOP1, Q8_NEAR = 6e-2, 0.9, 0.9
# Native vs the numpy reference on the same Q8_0 weights and 8-bit activations, per token as well:
# float32 and float64 routers can part on a near tie too.
Q8_REF_TOL = 4e-2
EXPERT_TENSORS = ("ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight")


ARCHS = ["qwen3moe", "qwen2moe"]
# GPT-OSS too routes with the shared code; its agreement with HF is in test_gpt_oss.
ROUTED = ARCHS + ["gpt_oss"]


@pytest.fixture(scope="module")
def tinies():
    built = {}

    def get(arch):
        if arch not in built:
            hf = tiny_gguf.random_model(tiny_gguf.tiny_config(arch), seed=0)
            built[arch] = hf, llama_convert.convert(hf)
        return built[arch]
    return get


def _picked(hf, tokens) -> list[set[int]]:
    """Per layer, the experts HF's router picks for any of tokens (one sequence)."""
    with torch.no_grad():
        out = hf(torch.as_tensor([tokens]), output_router_logits=True, use_cache=False)
    k = hf.config.num_experts_per_tok
    return [set(r.topk(k, dim=-1).indices.reshape(-1).tolist()) for r in out.router_logits]


def _n_expert(config) -> int:
    return getattr(config, "num_experts", None) or config.num_local_experts


def _poisoned_copy(path, dest, poison: list[set[int]]):
    """A copy of the f32 file whose listed experts (per layer) hold NaN in every weight."""
    shutil.copyfile(path, dest)
    with GGUFFile(dest) as f:
        spans = []
        for layer, experts in enumerate(poison):
            for suffix in EXPERT_TENSORS:
                t = f.tensors[f"blk.{layer}.{suffix}"]
                per_expert = t.n_bytes // int(t.shape[2])
                spans += [(t.offset + e * per_expert, per_expert) for e in experts]
    data = np.memmap(dest, dtype=np.uint8, mode="r+")
    for offset, n in spans:
        data[offset:offset + n] = np.full(n // 4, np.nan, dtype=np.float32).view(np.uint8)
    data.flush()
    del data
    return dest


def _logits(path, tokens):
    model = load_model(GGUFFile(path))
    n = len(tokens)
    return Stepper(model, KVCache(model, n_ctx=8), n_batch=n).step(tokens, np.arange(n), np.zeros(n), np.arange(n))


@pytest.mark.parametrize("arch", ROUTED)
@pytest.mark.parametrize("n_tok", [1, len(TOKENS)])
def test_unpicked_experts_are_never_read(tinies, tmp_path, arch, n_tok):
    # NaN in any weight that is read reaches the logits, so equal finite logits show a step reads
    # only the experts its tokens picked; poisoning a picked one must show up.
    hf, path = tinies(arch)
    tokens = TOKENS[:n_tok]
    picked = _picked(hf, tokens)
    n_expert = _n_expert(hf.config)
    assert all(len(p) < n_expert for p in picked)
    clean = _logits(path, tokens)
    unpicked = [set(range(n_expert)) - p for p in picked]
    got = _logits(_poisoned_copy(path, tmp_path / "unpicked.gguf", unpicked), tokens)
    assert np.array_equal(got, clean)
    # One of the first token's experts in the first layer: every later token attends to it.
    one_picked = [{min(_picked(hf, tokens[:1])[0])}] + [set()] * (len(picked) - 1)
    assert np.isnan(_logits(_poisoned_copy(path, tmp_path / "picked.gguf", one_picked), tokens)).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_q8_0_file_tracks_hf(tinies, arch):
    hf, _ = tinies(arch)
    tokens = np.random.default_rng(1).integers(0, hf.config.vocab_size, 40)
    want = tiny_gguf.hf_logits(hf, tokens)
    model = load_model(GGUFFile(llama_convert.convert(hf, "q8_0")))
    n = len(tokens)
    got = Stepper(model, KVCache(model, n_ctx=n)).step(tokens, np.arange(n), np.zeros(n), np.arange(n))
    per_token = np.sqrt(np.mean((got - want) ** 2, axis=1) / np.mean(want ** 2, axis=1))
    assert np.mean(per_token <= Q8_RMS) >= Q8_NEAR
    assert np.mean(got.argmax(axis=1) == want.argmax(axis=1)) >= Q8_TOP1
    ref = reference_logits(model, tokens, quantize_inputs=True)
    assert np.mean(np.abs(got - ref).max(axis=1) / np.abs(ref).max() <= Q8_REF_TOL) >= Q8_NEAR


def _with_count(path, dest, key: str, value: int):
    """A copy of the file whose u32 metadata key holds value instead."""
    data = bytearray(path.read_bytes())
    at = data.index(key.encode()) + len(key)
    assert int.from_bytes(data[at:at + 4], "little") == 4  # GGUF_TYPE_UINT32
    data[at + 4:at + 8] = value.to_bytes(4, "little")
    dest.write_bytes(bytes(data))
    return dest


@pytest.mark.parametrize("key, value, message", [
    ("qwen3moe.expert_used_count", 9, "uses 9 of 8 experts"),
    # The stacked tensors then hold more experts than the file says: refused, not read past.
    ("qwen3moe.expert_count", 4, "blk.0.ffn_gate_inp.weight"),
])
def test_inconsistent_expert_counts_are_refused(tinies, tmp_path, key, value, message):
    _, path = tinies("qwen3moe")
    with pytest.raises(GGUFError, match=message):
        load_model(GGUFFile(_with_count(path, tmp_path / "bad.gguf", key, value)))


def test_requantize_takes_quantized_experts(tinies):
    # tools/bench_moe makes its GPT-OSS file so: the converter's Q8_0 experts rounded again to MXFP4,
    # every other tensor left as it was.
    import gguf

    hf, _ = tinies("qwen3moe")
    q8 = llama_convert.convert(hf, "q8_0")
    mx = llama_convert.requantize(q8, "MXFP4", ("_exps.weight",))
    src = {t.name: t for t in gguf.GGUFReader(q8).tensors}
    got = {t.name: t for t in gguf.GGUFReader(mx).tensors}
    assert src.keys() == got.keys()
    mxfp4 = gguf.GGMLQuantizationType.MXFP4
    for name, t in got.items():
        if name.endswith(EXPERT_TENSORS):
            assert t.tensor_type == mxfp4
            want = gguf.quants.quantize(gguf.quants.dequantize(src[name].data, src[name].tensor_type), mxfp4)
            assert np.array_equal(np.asarray(t.data), want)
        else:
            assert t.tensor_type == src[name].tensor_type
            assert np.array_equal(np.asarray(t.data), np.asarray(src[name].data))
