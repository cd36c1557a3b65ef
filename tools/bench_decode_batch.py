"""Decode step time of a batch of B sequences (one token each) through Stepper.step, per model.

Every sequence first holds the same prompt (--ctx tokens, copied into each slot), so each step
attends over that many positions. Batch sizes alternate within each round (the machine's memory
bandwidth drifts with other tenants, so separate runs are not comparable) and the table shows
medians over --repeat rounds, with each B's ratio to B = 1 of the same rounds. On a machine
shared with other work, `--threads 1 --clock cpu` counts this process's CPU time instead of wall
time: one thread runs the whole step on the caller, so time lost to other tenants drops out (with
more threads a barrier's spinning would count).

--repack 0,1 loads each model once per value of TENSORSHARP_REPACK (the file's layout, the
repacked one) and times both in the same rounds, one line each. --kv-cache-type f16,q8_0 does
the same for the KV cache's types (and gives llama.cpp a line per type: -ctk/-ctv, flash attention on).

--llama-bin DIR adds a line per model and thread count for llama.cpp: its llama-batched-bench
(build the target beside llama-server) decodes --llama-tokens tokens in each of B sequences
after a prompt of --ctx tokens, and a step is its generation time over the tokens. Its
sequences attend over ctx to ctx + tokens positions, ours over ctx. It runs three times after
ours; medians. Always wall time.

    python tools/bench_decode_batch.py [--models smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b]
                                       [--threads 2] [--batch 1,2,4,8,16] [--repeat 9] [--steps 5]
                                       [--clock wall|cpu] [--repack 0,1] [--kv-cache-type f16,q8_0]
                                       [--llama-bin DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

from tensorsharp import store
from tensorsharp.engine.batch import Stepper
from tensorsharp.engine.kv_cache import KVCache
from tensorsharp.gguf import GGUFFile
from tensorsharp.models import load_model

MODELS = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"]


def stepper_of(name: str, threads: int, batches: list[int], ctx: int, repack: str | None, kv_type: str = "f16"):
    """step(b): one decode step of b sequences of model `name` (loaded with TENSORSHARP_REPACK set
    to repack where given) over a KV cache of kv_type."""
    saved = os.environ.get("TENSORSHARP_REPACK")
    if repack is not None:
        os.environ["TENSORSHARP_REPACK"] = repack
    try:
        transformer = load_model(GGUFFile(store.resolve(name)))
    finally:
        if saved is None:
            os.environ.pop("TENSORSHARP_REPACK", None)
        else:
            os.environ["TENSORSHARP_REPACK"] = saved
    n_seq = max(batches)
    cache = KVCache(transformer, n_ctx=ctx + 8, n_seq=n_seq, cache_type=kv_type)
    stepper = Stepper(transformer, cache, n_batch=max(n_seq, ctx), n_threads=threads)
    prompt = np.random.default_rng(0).integers(0, transformer.hparams.n_vocab, ctx)
    stepper.prefill(prompt, seq=0)
    cache.length[0] = ctx
    for s in range(1, n_seq):
        cache.copy_prefix(0, s, ctx)

    def step(b: int) -> None:
        # The same position every step: each overwrites the K/V the last one wrote.
        stepper.step(np.full(b, 42), np.full(b, ctx), np.arange(b), np.arange(b))

    return step


def bench_model(name: str, threads: int, batches: list[int], ctx: int, repeat: int, steps: int, clock,
                variants: list[tuple[str | None, str]]) -> list[dict[int, list[float]]]:
    """Per variant (repack, KV cache type), per batch size, the step time (s) of each round."""
    step_fns = [stepper_of(name, threads, batches, ctx, r, t) for r, t in variants]
    for step in step_fns:  # warm-up: pages in the weights, sizes the pool
        for b in batches:
            step(b)
    times: list[dict[int, list[float]]] = [{b: [] for b in batches} for _ in step_fns]
    for _ in range(repeat):
        for b in batches:
            for step, tv in zip(step_fns, times):
                t0 = clock()
                for _ in range(steps):
                    step(b)
                tv[b].append((clock() - t0) / steps)
    return times


def llama_steps(llama_bin: str, name: str, threads: int, batches: list[int], ctx: int, tokens: int,
                kv_type: str = "f16", rounds: int = 3) -> dict[int, float]:
    """Per batch size, llama.cpp's median decode step time (s) from llama-batched-bench."""
    cmd = [str(Path(llama_bin) / "llama-batched-bench"), "-m", str(store.resolve(name)),
           "-c", str(max(batches) * (ctx + tokens) + 64), "-b", "2048", "-ub", "512", "-npp", str(ctx),
           "-ntg", str(tokens), "-npl", ",".join(map(str, batches)), "-t", str(threads)]
    if kv_type != "f16":   # a quantized V cache needs llama.cpp's flash attention
        cmd += ["-ctk", kv_type, "-ctv", kv_type, "-fa", "on"]
    steps: dict[int, list[float]] = {b: [] for b in batches}
    for _ in range(rounds):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            # | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 8 and cells[0].isdigit():
                steps[int(cells[2])].append(float(cells[6]) / int(cells[1]))
    return {b: statistics.median(t) for b, t in steps.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", default="2", help="comma-separated thread counts")
    ap.add_argument("--batch", default="1,2,4,8,16", help="comma-separated batch sizes (sequences per step)")
    ap.add_argument("--ctx", type=int, default=128, help="positions each sequence already holds")
    ap.add_argument("--repeat", type=int, default=9, help="rounds over all batch sizes; medians")
    ap.add_argument("--steps", type=int, default=5, help="steps timed together per batch size and round")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall time, or this process's CPU time")
    ap.add_argument("--repack", default=None, help="comma-separated TENSORSHARP_REPACK values timed side by side")
    ap.add_argument("--kv-cache-type", default="f16", help="comma-separated KV cache types timed side by side")
    ap.add_argument("--llama-bin", default=None, help="llama.cpp's bin directory (llama-batched-bench)")
    ap.add_argument("--llama-tokens", type=int, default=32, help="tokens llama-batched-bench decodes per sequence")
    args = ap.parse_args()
    repacks = args.repack.split(",") if args.repack else [None]
    kv_types = args.kv_cache_type.split(",")
    variants = [(r, t) for r in repacks for t in kv_types]
    batches = [int(b) for b in args.batch.split(",")]
    if 1 not in batches:
        batches = [1] + batches
    print(f"{args.clock} time per step")
    print("| model | threads | " + " | ".join(f"B={b} ms" for b in batches) + " | "
          + " | ".join(f"B={b}/B=1" for b in batches if b != 1) + " |")
    print("|---|---|" + "---|" * (2 * len(batches) - 1))
    for name in args.models.split(","):
        for nt in (int(t) for t in args.threads.split(",")):
            clock = time.perf_counter if args.clock == "wall" else time.process_time
            for (repack, kv_type), times in zip(variants, bench_model(name, nt, batches, args.ctx, args.repeat,
                                                                      args.steps, clock, variants)):
                med = {b: statistics.median(t) for b, t in times.items()}
                ratio = {b: statistics.median(x / y for x, y in zip(times[b], times[1])) for b in batches}
                label = name + ("" if repack is None else f" REPACK={repack}") + (f" KV={kv_type}" if len(kv_types) > 1 else "")
                print(f"| {label} | {nt} | " + " | ".join(f"{1e3 * med[b]:.1f}" for b in batches) + " | "
                      + " | ".join(f"{ratio[b]:.2f}" for b in batches if b != 1) + " |", flush=True)
            for kv_type in kv_types if args.llama_bin else ():
                peer = llama_steps(args.llama_bin, name, nt, batches, args.ctx, args.llama_tokens, kv_type)
                label = f"{name} llama.cpp" + (f" KV={kv_type}" if len(kv_types) > 1 else "")
                print(f"| {label} | {nt} | " + " | ".join(f"{1e3 * peer[b]:.1f}" for b in batches) + " | "
                      + " | ".join(f"{peer[b] / peer[1]:.2f}" for b in batches if b != 1) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
