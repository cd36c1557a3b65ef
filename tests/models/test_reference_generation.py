"""Whole models against llama.cpp (tests/data): teacher-forced log-probabilities and greedy runs.

The thresholds are the engine issue's: two llama.cpp builds with different SIMD paths measure
100% / 99.3% arg-max agreement and mean |d logprob| 0.012-0.031 (top-1), 0.06-0.12 (top-5)."""
import ast
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from tensorsharp.llm import Model

CASES = json.loads((Path(__file__).resolve().parents[1] / "data" / "generation_greedy.json").read_text())
NAMES = {"SmolLM2-135M-Instruct.Q4_1.gguf": "smollm2-135m", "gemma-3-270m-q4_k_m.gguf": "gemma3-270m",
         "qwen2.5-coder-0.5b-instruct.gguf": "qwen2.5-coder-0.5b"}

pytestmark = pytest.mark.llama_cpp


def _parse(v):
    return ast.literal_eval(v) if isinstance(v, str) else v


@lru_cache(maxsize=1)  # one model in memory at a time
def _model(name):
    return Model(name, n_ctx=1024)


def _log_softmax(logits):
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _teacher_forced(case):
    """Per step: (our arg-max, reference token, margin, |d| top-1, mean |d| top-5)."""
    m = _model(NAMES[case["model"]])
    prompt, gen = case["prompt_ids"], case["generated_ids"]
    lp = _log_softmax(m.eval(prompt + gen[:-1], logits_all=True)[len(prompt) - 1:])
    margins = _parse(case["top1_top2_logprob_margin"])
    rows = []
    for step, ref in enumerate(_parse(case["per_token"])):
        ids = [t["id"] for t in ref["top5"]]
        d = np.abs(lp[step][ids] - np.array([t["logprob"] for t in ref["top5"]]))
        rows.append((int(np.argmax(lp[step])), gen[step], margins[step], d[0], d.mean()))
    return rows


@pytest.mark.parametrize("name", sorted(set(NAMES.values())))
def test_teacher_forced_matches_llama_cpp(name):
    rows = [r for c in CASES if NAMES[c["model"]] == name for r in _teacher_forced(c)]
    assert rows
    ours, ref, margin, d1, d5 = (np.array(v) for v in zip(*rows))
    assert np.all(ours[margin >= 0.5] == ref[margin >= 0.5])
    assert np.mean(ours[margin >= 0.1] == ref[margin >= 0.1]) >= 0.98
    assert d1.mean() <= 0.05, d1.mean()
    assert d5.mean() <= 0.2, d5.mean()


# Free-running greedy decoding follows the reference until a near-tie, where any int8-activation
# implementation can go either way: our own batch and one-token paths differ by up to ~0.16 nats on a
# token's log-probability (their sums agree to 1e-7; a flipped int8 rounding grows through the layers),
# and re-chunking the prompt alone moves the count of whole robust prefixes reproduced between 15 and
# 17 of 21. So a parting is allowed only where the reference margin is below the teacher-forced bar
# (0.5) plus that spread; a parting above it means the one-token path computes something else.
PARTING_MARGIN = 0.7


def test_greedy_generate_parts_from_llama_cpp_only_at_near_ties():
    partings = []
    for c in sorted(CASES, key=lambda c: c["model"]):  # one model load per model
        m = _model(NAMES[c["model"]])
        n = c["robust_prefix_len"]
        got, want = list(m.generate(c["prompt_ids"], n)), c["generated_ids"][:n]
        i = next((k for k in range(n) if got[k] != want[k]), None)
        if i is not None:
            partings.append((NAMES[c["model"]], i, _parse(c["top1_top2_logprob_margin"])[i]))
    assert all(margin < PARTING_MARGIN for _, _, margin in partings), partings
