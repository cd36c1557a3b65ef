"""End-to-end speed: prompt processing (512 tokens) and decode (128 tokens), ours beside llama.cpp.

Each measurement runs in its own process (clean memory, honest peak RSS). llama.cpp is measured
through llama-cpp-python when it is installed (build it without AMX, see the README).

    python tools/bench.py [--models smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b] [--threads 1,2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

MODELS = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"]
TEXT = ("The history of computing is a story of people who wanted machines to think faster than they "
        "could, and of the many small ideas that made that possible, one after another. ")


def _prompt_ids(tokenize, n: int) -> list[int]:
    ids = []
    while len(ids) < n:
        ids += tokenize(TEXT)
    return ids[:n]


def run_ours(path: str, threads: int, n_prompt: int, n_gen: int) -> dict:
    from tensorsharp.llm import Model
    m = Model(path, n_ctx=n_prompt + n_gen + 8, n_threads=threads, n_batch=n_prompt)
    ids = _prompt_ids(lambda t: m.tokenize(t, add_special=False), n_prompt)
    m.eval(ids[:16])  # warm-up: page in the weights
    t0 = time.perf_counter()
    logits = m.eval(ids)
    t_pp = time.perf_counter() - t0
    tok, pos = int(np.argmax(logits)), n_prompt
    t0 = time.perf_counter()
    for _ in range(n_gen):
        logits = m.stepper.step([tok], [pos], [0], [0])[0]
        tok, pos = int(np.argmax(logits)), pos + 1
    t_tg = time.perf_counter() - t0
    return {"pp": n_prompt / t_pp, "tg": n_gen / t_tg}


def run_llama(path: str, threads: int, n_prompt: int, n_gen: int) -> dict:
    from llama_cpp import Llama
    # n_batch = n_ctx: llama-cpp-python keeps logits in an (n_batch, n_vocab) array indexed by position.
    n_ctx = n_prompt + n_gen + 8
    llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                n_batch=n_ctx, n_ubatch=n_prompt, verbose=False)
    ids = _prompt_ids(lambda t: llm.tokenize(t.encode(), add_bos=False), n_prompt)
    llm.eval(ids[:16])
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t_pp = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n_gen):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        llm.eval([tok])
    t_tg = time.perf_counter() - t0
    return {"pp": n_prompt / t_pp, "tg": n_gen / t_tg}


def worker(args) -> int:
    fn = run_ours if args.worker == "ours" else run_llama
    res = fn(args.path, args.t, args.n_prompt, args.n_gen)
    res["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(res))
    return 0


def measure(engine: str, path: str, threads: int, args) -> dict | None:
    python = args.llama_python if engine == "llama" and args.llama_python else sys.executable
    cmd = [python, __file__, "--worker", engine, "--path", path, "--t", str(threads),
           "--n-prompt", str(args.n_prompt), "--n-gen", str(args.n_gen)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"  {engine} failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--n-prompt", type=int, default=512)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--llama-python", help="interpreter that has llama-cpp-python (default: this one)")
    ap.add_argument("--worker", choices=["ours", "llama"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--t", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    from tensorsharp import store
    probe = [args.llama_python or sys.executable, "-c", "import llama_cpp"]
    have_llama = subprocess.run(probe, capture_output=True).returncode == 0
    if not have_llama:
        print("llama-cpp-python is not installed: measuring tensorsharp alone", file=sys.stderr)
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.2f} > 0.5: the machine is busy, figures will be noisy",
              file=sys.stderr)
    print(f"| model | threads | pp{args.n_prompt} ours | pp llama.cpp | ratio | tg{args.n_gen} ours | "
          "tg llama.cpp | ratio | peak RSS ours MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        path = str(store.resolve(name))
        for t in (int(x) for x in args.threads.split(",")):
            ours = measure("ours", path, t, args)
            ref = measure("llama", path, t, args) if have_llama else None
            if ours is None:
                continue

            def cell(key):
                if ref is None:
                    return "-", "-"
                return f"{ref[key]:.1f}", f"{ours[key] / ref[key]:.2f}x"
            pp_ref, pp_ratio = cell("pp")
            tg_ref, tg_ratio = cell("tg")
            print(f"| {name} | {t} | {ours['pp']:.1f} | {pp_ref} | {pp_ratio} | {ours['tg']:.1f} | {tg_ref} | "
                  f"{tg_ratio} | {ours['rss_mb']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
