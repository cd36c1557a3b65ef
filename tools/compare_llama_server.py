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
from tensorsharp.testing.server import running_process


def llama_reply(llama_server: str, path: Path, prompt: list[int], n: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    """llama-server's greedy tokens after prompt, their log-probabilities and their margins over the
    runner-up, NaN where it gives none (one thread, f16 cache, full sliding-window cache as ours)."""
    args = ["-m", str(path), "--port", "{port}", "--host", "127.0.0.1", "-t", "1", "-np", "1",
            "-c", str(len(prompt) + n + 8), "--no-warmup", "--swa-full", "--no-webui", "-ngl", "0"]
    with tempfile.TemporaryDirectory() as tmp, running_process(args, Path(tmp), executable=llama_server) as (base, _):
        body = {"prompt": prompt, "n_predict": n, "temperature": 0, "top_k": 1, "n_probs": 2, "cache_prompt": False,
                "post_sampling_probs": False, "ignore_eos": True, "return_tokens": True}
        r = requests.post(base + "/completion", json=body, timeout=600)
        r.raise_for_status()
        answer = r.json()
    # Where a token ends inside a UTF-8 character, llama-server reports no probability for it (it
    # waits for the character's end), so the probabilities are a subsequence of the tokens.
    reply, probs, logprob, margin, j = answer["tokens"], answer.get("completion_probabilities", []), [], [], 0
    for tok in reply:
        if j < len(probs) and probs[j]["id"] == tok:
            logprob.append(probs[j]["logprob"])
            top = sorted((t["logprob"] for t in probs[j]["top_logprobs"]), reverse=True)
            margin.append(top[0] - top[1] if len(top) > 1 else np.nan)
            j += 1
        else:
            logprob.append(np.nan)
            margin.append(np.nan)
    return reply, np.array(logprob), np.array(margin)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--llama-server", required=True)
    p.add_argument("file", type=Path)
    p.add_argument("--prompt", type=int, default=16, help="random prompt tokens")
    p.add_argument("--tokens", type=int, default=48, help="tokens llama-server generates")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    model = load_model(GGUFFile(args.file))
    prompt = [int(t) for t in np.random.default_rng(args.seed).integers(0, model.hparams.n_vocab, args.prompt)]
    reply, theirs, margin = llama_reply(args.llama_server, args.file, prompt, args.tokens)
    tokens = np.array(prompt + reply)
    n = len(tokens)
    model.use_context(n)
    logits = Stepper(model, KVCache(model, n_ctx=n)).step(tokens, np.arange(n), np.zeros(n), np.arange(n))
    ours = logits[len(prompt) - 1:n - 1].astype(np.float64)
    top = ours.max(axis=1, keepdims=True)
    logprob = ours[np.arange(len(reply)), reply] - (top[:, 0] + np.log(np.exp(ours - top).sum(axis=1)))
    diff = np.abs(logprob - theirs)[~np.isnan(theirs)]
    agree = ours.argmax(axis=1) == reply
    # As tests/models/test_reference_generation.py bounds real models: near-ties may go either way.
    wide = [f"{np.mean(agree[margin >= m]):.3f} of {np.sum(margin >= m)}" if np.any(margin >= m) else "none"
            for m in (0.5, 0.1)]
    lp = (f"|d log-prob| over {len(diff)} mean {diff.mean():.2e} max {diff.max():.2e}" if len(diff)
          else "no log-probabilities given")
    print(f"{args.file.name}: {len(reply)} tokens, argmax agreement {np.mean(agree):.3f} (margin >= 0.5: {wide[0]}, "
          f">= 0.1: {wide[1]}), {lp}")


if __name__ == "__main__":
    main()
