"""Our logits against llama.cpp's on one GGUF file, teacher-forced on llama-server's greedy reply.

llama-server continues a random prompt greedily and reports each chosen token's log-probability;
our engine then runs prompt + reply in one batch. Printed: how often our argmax is llama.cpp's
token, and the mean and largest |difference| of that token's log-probability. For files no
llama-cpp-python is at hand for (the converted tiny models of tests/models, real downloads):

    python tools/compare_llama_server.py --llama-server PATH FILE.gguf [--prompt 16] [--tokens 48]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import requests

from tensorsharp.engine.batch import Stepper
from tensorsharp.engine.kv_cache import KVCache
from tensorsharp.gguf import GGUFFile
from tensorsharp.models import load_model
from tensorsharp.testing.reference import reference_logits
from tensorsharp.testing.server import running_process

TOP_N = 4   # llama.cpp's most likely tokens whose log-probabilities are compared


def llama_reply(llama_server: str, path: Path, prompt: list[int], n: int
                ) -> tuple[list[int], np.ndarray, np.ndarray, list[dict[int, float]]]:
    """llama-server's greedy tokens after prompt, their log-probabilities, their margins over the
    runner-up (NaN where it gives none) and its TOP_N most likely tokens' log-probabilities at each
    position ({} where none; one thread, f16 cache, full sliding-window cache as ours)."""
    args = ["-m", str(path), "--port", "{port}", "--host", "127.0.0.1", "-t", "1", "-np", "1",
            "-c", str(len(prompt) + n + 8), "--no-warmup", "--swa-full", "--no-webui", "-ngl", "0"]
    with tempfile.TemporaryDirectory() as tmp, running_process(args, Path(tmp), executable=llama_server) as (base, _):
        body = {"prompt": prompt, "n_predict": n, "temperature": 0, "top_k": 1, "n_probs": TOP_N, "cache_prompt": False,
                "post_sampling_probs": False, "ignore_eos": True, "return_tokens": True}
        r = requests.post(base + "/completion", json=body, timeout=600)
        r.raise_for_status()
        answer = r.json()
    # Where a token ends inside a UTF-8 character, llama-server reports no probability for it (it
    # waits for the character's end), so the probabilities are a subsequence of the tokens.
    reply, probs, logprob, margin, alts, j = answer["tokens"], answer.get("completion_probabilities", []), [], [], [], 0
    for tok in reply:
        if j < len(probs) and probs[j]["id"] == tok:
            logprob.append(probs[j]["logprob"])
            top = sorted((t["logprob"] for t in probs[j]["top_logprobs"]), reverse=True)
            margin.append(top[0] - top[1] if len(top) > 1 else np.nan)
            alts.append({t["id"]: t["logprob"] for t in probs[j]["top_logprobs"]})
            j += 1
        else:
            logprob.append(np.nan)
            margin.append(np.nan)
            alts.append({})
    return reply, np.array(logprob), np.array(margin), alts


def compare(llama_server: str, path: Path, n_prompt: int = 16, n_tokens: int = 48, seed: int = 0,
            exact: bool = False) -> dict:
    """Our logits against llama-server's greedy reply to a random prompt: the reply's length, how
    often our argmax is its token (overall and where its margin is at least 0.5 / 0.1: count and
    share), the |difference| of that token's log-probability (count, mean, max) and its mean over
    llama.cpp's TOP_N tokens (where a random model is sure of its token, both log-probabilities of
    that token are near 0 whatever the logits, and the runners-up show the difference). exact: also
    the mean |difference| over those tokens of ours and of llama.cpp's log-probabilities from the
    numpy reference's in float64 on the same dequantized weights (testing.reference; not for
    attention sinks, which it does not apply), which says whose arithmetic strays where we differ."""
    model = load_model(GGUFFile(path))
    prompt = [int(t) for t in np.random.default_rng(seed).integers(0, model.hparams.n_vocab, n_prompt)]
    reply, theirs, margin, alts = llama_reply(llama_server, path, prompt, n_tokens)
    tokens = np.array(prompt + reply)
    n = len(tokens)
    model.use_context(n)
    logits = Stepper(model, KVCache(model, n_ctx=n)).step(tokens, np.arange(n), np.zeros(n), np.arange(n))
    ours = logits[len(prompt) - 1:n - 1].astype(np.float64)
    top = ours.max(axis=1, keepdims=True)
    ours = ours - (top + np.log(np.exp(ours - top).sum(axis=1, keepdims=True)))
    logprob = ours[np.arange(len(reply)), reply]
    top_diff = [abs(ours[i, t] - lp) for i, alt in enumerate(alts) for t, lp in alt.items()]
    diff = np.abs(logprob - theirs)[~np.isnan(theirs)]
    to_exact = {}
    if exact:
        ref = reference_logits(model, tokens)[len(prompt) - 1:n - 1]
        ref = ref - (ref.max(axis=1, keepdims=True) + np.log(np.exp(ref - ref.max(axis=1, keepdims=True))
                                                            .sum(axis=1, keepdims=True)))
        pairs = [(i, t, lp) for i, alt in enumerate(alts) for t, lp in alt.items()]
        to_exact = {"ours_to_exact": float(np.mean([abs(ours[i, t] - ref[i, t]) for i, t, _ in pairs])),
                    "theirs_to_exact": float(np.mean([abs(lp - ref[i, t]) for i, t, lp in pairs]))}
    agree = ours.argmax(axis=1) == reply
    # As tests/models/test_reference_generation.py bounds real models: near-ties may go either way.
    wide = {m: (int(np.sum(margin >= m)), float(np.mean(agree[margin >= m])) if np.any(margin >= m) else None)
            for m in (0.5, 0.1)}
    return {"tokens": len(reply), "agree": float(np.mean(agree)), "margin": wide, "n_logprob": len(diff),
            "mean_diff": float(diff.mean()) if len(diff) else None,
            "max_diff": float(diff.max()) if len(diff) else None,
            "mean_top_diff": float(np.mean(top_diff)) if top_diff else None, **to_exact}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--llama-server", required=True)
    p.add_argument("file", type=Path)
    p.add_argument("--prompt", type=int, default=16, help="random prompt tokens")
    p.add_argument("--tokens", type=int, default=48, help="tokens llama-server generates")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    r = compare(args.llama_server, args.file, args.prompt, args.tokens, args.seed)
    wide = [f"{share:.3f} of {count}" if count else "none" for count, share in (r["margin"][0.5], r["margin"][0.1])]
    lp = (f"|d log-prob| over {r['n_logprob']} mean {r['mean_diff']:.2e} max {r['max_diff']:.2e}, "
          f"over its top {TOP_N} mean {r['mean_top_diff']:.2e}" if r["n_logprob"]
          else "no log-probabilities given")
    print(f"{args.file.name}: {r['tokens']} tokens, argmax agreement {r['agree']:.3f} (margin >= 0.5: {wide[0]}, "
          f">= 0.1: {wide[1]}), {lp}")


if __name__ == "__main__":
    main()
