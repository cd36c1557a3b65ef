"""Whole models against llama.cpp: greedy tokens and top-5 log-probabilities from shared/refdata."""
import ast
import json
from pathlib import Path

import numpy as np
import pytest

from tensorsharp.engine.batch import Stepper
from tensorsharp.engine.kv_cache import KVCache
from tensorsharp.gguf import GGUFFile
from tensorsharp.models import load_model
from tensorsharp.testing.models import model_path

REFDATA = Path(__file__).resolve().parents[3] / "shared" / "refdata"
CASES = json.loads((REFDATA / "generation_greedy.json").read_text()) if REFDATA.exists() else []
NAMES = {"SmolLM2-135M-Instruct.Q4_1.gguf": "smollm2-135m", "gemma-3-270m-q4_k_m.gguf": "gemma3-270m",
         "qwen2.5-coder-0.5b-instruct.gguf": "qwen2.5-coder-0.5b"}
# llama.cpp quantizes activations slightly differently (f16 block scales, asymmetric Q8_K),
# so log-probabilities agree to a few hundredths, not exactly.
LOGPROB_TOL = 0.12

pytestmark = pytest.mark.skipif(not CASES, reason="shared/refdata is not beside the checkout")

_loaded = {}


def _model(file):
    if file not in _loaded:
        _loaded.clear()  # one model in memory at a time
        _loaded[file] = load_model(GGUFFile(model_path(NAMES[file])))
    return _loaded[file]


def _log_softmax(logits):
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _case_id(c):
    return f"{NAMES[c['model']]}-p{c['prompt_index']}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_teacher_forced_logprobs_match_llama_cpp(case):
    model = _model(case["model"])
    prompt, gen = case["prompt_ids"], case["generated_ids"]
    per_token = ast.literal_eval(case["per_token"]) if isinstance(case["per_token"], str) else case["per_token"]
    seq = prompt + gen[:-1]
    stepper = Stepper(model, KVCache(model, n_ctx=len(seq) + 8), n_batch=256)
    rows, logits = [], []
    # Prefill the prompt and generated tokens in chunks, reading logits from the last prompt token on.
    for a in range(0, len(seq), stepper.n_batch):
        chunk = seq[a:a + stepper.n_batch]
        want = [i for i in range(len(chunk)) if a + i >= len(prompt) - 1]
        out = stepper.step(chunk, np.arange(a, a + len(chunk)), np.zeros(len(chunk)), want)
        rows += [a + i for i in want]
        logits.append(out)
    lp = _log_softmax(np.concatenate(logits))
    assert len(rows) == len(gen)
    for step, ref in enumerate(per_token):
        ours = lp[step]
        ref_ids = [t["id"] for t in ref["top5"]]
        ref_lp = np.array([t["logprob"] for t in ref["top5"]])
        assert np.all(np.abs(ours[ref_ids] - ref_lp) < LOGPROB_TOL), (step, ours[ref_ids], ref_lp)
        if step < case["robust_prefix_len"]:
            assert int(np.argmax(ours)) == gen[step], step


@pytest.mark.parametrize("case", [c for c in CASES if c["prompt_index"] in (0, 8)], ids=_case_id)
def test_greedy_decode_matches_llama_cpp(case):
    model = _model(case["model"])
    prompt, gen = case["prompt_ids"], case["generated_ids"]
    stepper = Stepper(model, KVCache(model, n_ctx=len(prompt) + len(gen) + 8), n_batch=128)
    logits = stepper.prefill(prompt)
    out = []
    for i in range(case["robust_prefix_len"]):
        tok = int(np.argmax(logits))
        out.append(tok)
        logits = stepper.step([tok], [len(prompt) + i], [0], [0])[0]
    assert out == gen[: case["robust_prefix_len"]]
