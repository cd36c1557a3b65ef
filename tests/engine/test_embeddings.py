"""Embedding requests through the scheduler: final hidden states pooled as the GGUF says, against HF
on tiny random decoders converted by llama.cpp's converter with sentence-transformers' pooling."""
import json
import threading

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5")

import torch  # noqa: E402

from tensorsharp.engine.batch import Stepper  # noqa: E402
from tensorsharp.engine.kv_cache import KVCache  # noqa: E402
from tensorsharp.engine.request import Done, Embedded, Failed, GenerationRequest  # noqa: E402
from tensorsharp.engine.scheduler import Scheduler  # noqa: E402
from tensorsharp.gguf import GGUFFile  # noqa: E402
from tensorsharp.models import load_model  # noqa: E402
from tensorsharp.testing import llama_convert, tiny_gguf  # noqa: E402
from tensorsharp.tokenizer import Tokenizer  # noqa: E402

pytestmark = pytest.mark.hf

COSINE_TOL = 1e-3   # the bound on cosine distance from HF (f32 weights: only the f16 KV cache differs)
LAST, MEAN = 3, 1   # GGUF pooling types


def sentence_transformers_files(mode: str) -> dict[str, str]:
    """modules.json and the Pooling module's config, as a sentence-transformers upload has them."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    return {"modules.json": json.dumps(modules), "1_Pooling/config.json": json.dumps({f"pooling_mode_{mode}": True})}


@pytest.fixture(scope="module")
def qwen3():
    model = tiny_gguf.random_model(tiny_gguf.tiny_config("qwen3"), seed=11)
    files = {mode: llama_convert.convert(model, files=sentence_transformers_files(mode))
             for mode in ("lasttoken", "mean_tokens")}
    return model, files


def hf_states(model, tokens) -> np.ndarray:
    """HF's final hidden states (after the last norm) of one sequence."""
    with torch.no_grad():
        out = model.model(torch.as_tensor([list(tokens)], dtype=torch.long), use_cache=False)
    return out.last_hidden_state[0].double().numpy()


def embed_all(path, prompts: list[list[int]], n_batch: int = 512, parallel: int = 2) -> list[np.ndarray]:
    gguf = GGUFFile(path)
    pooling = {LAST: "last", MEAN: "mean"}[gguf.metadata["qwen3.pooling_type"]]
    transformer = load_model(gguf)
    stepper = Stepper(transformer, KVCache(transformer, 64, n_seq=parallel), n_batch=n_batch, n_threads=1)
    scheduler = Scheduler(stepper, Tokenizer.from_metadata(gguf.metadata), parallel=parallel).start()
    events, done = {}, threading.Semaphore(0)

    def sink(i):
        def put(e):
            events.setdefault(i, []).append(e)
            if isinstance(e, (Done, Failed)):
                done.release()
        return put
    try:
        for i, p in enumerate(prompts):
            scheduler.submit(GenerationRequest(p, 0, pooling=pooling, reuse_prefix=False), sink(i))
        for _ in prompts:
            assert done.acquire(timeout=60)
    finally:
        scheduler.close()
    out = []
    for i in range(len(prompts)):
        kinds = [type(e).__name__ for e in events[i] if type(e).__name__ != "Queued"]
        assert kinds == ["Started", "Embedded", "Done"], kinds
        assert events[i][-1].reason == "stop" and events[i][-1].completion_tokens == 0
        out.append(events[i][-2].vector)
    return out


def cosine_distance(a, b) -> float:
    return 1.0 - float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("mode, pool", [("lasttoken", lambda h: h[-1]), ("mean_tokens", lambda h: h.mean(0))])
def test_pooled_states_match_hf(qwen3, mode, pool):
    model, files = qwen3
    rng = np.random.default_rng(3)
    # Three prompts batched together (two at a time), one longer than a step of 16.
    prompts = [rng.integers(0, model.config.vocab_size, n).tolist() for n in (9, 23, 40)]
    for n_batch in (512, 16):
        got = embed_all(files[mode], prompts, n_batch=n_batch)
        for p, v in zip(prompts, got):
            assert cosine_distance(v, pool(hf_states(model, p))) < COSINE_TOL


def test_the_converter_records_the_pooling(qwen3):
    _, files = qwen3
    assert GGUFFile(files["lasttoken"]).metadata["qwen3.pooling_type"] == LAST
    assert GGUFFile(files["mean_tokens"]).metadata["qwen3.pooling_type"] == MEAN


def test_unknown_pooling_is_refused(qwen3):
    _, files = qwen3
    gguf = GGUFFile(files["lasttoken"])
    transformer = load_model(gguf)
    stepper = Stepper(transformer, KVCache(transformer, 16, n_seq=1), n_batch=8, n_threads=1)
    with pytest.raises(ValueError, match="pooling"):
        Scheduler(stepper, Tokenizer.from_metadata(gguf.metadata)).submit(
            GenerationRequest([1, 2], 0, pooling="max"), lambda e: None)
