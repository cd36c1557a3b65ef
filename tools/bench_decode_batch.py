"""Decode step time of a batch of B sequences (one token each) through Stepper.step, per model.

Every sequence first holds the same prompt (--ctx tokens, copied into each slot), so each step
attends over that many positions. Batch sizes alternate within each round (the machine's memory
bandwidth drifts with other tenants, so separate runs are not comparable) and the table shows
medians over --repeat rounds, with each B's ratio to B = 1 of the same rounds. On a machine
shared with other work, `--threads 1 --clock cpu` counts this process's CPU time instead of wall
time: one thread runs the whole step on the caller, so time lost to other tenants drops out (with
more threads a barrier's spinning would count).

    python tools/bench_decode_batch.py [--models smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b]
                                       [--threads 2] [--batch 1,2,4,8,16] [--repeat 9] [--steps 5]
                                       [--clock wall|cpu]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from tensorsharp import store
from tensorsharp.engine.batch import Stepper
from tensorsharp.engine.kv_cache import KVCache
from tensorsharp.gguf import GGUFFile
from tensorsharp.models import load_model

MODELS = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"]


def bench_model(name: str, threads: int, batches: list[int], ctx: int, repeat: int, steps: int,
                clock) -> dict[int, list[float]]:
    """Per batch size, the step time (s) of each round."""
    transformer = load_model(GGUFFile(store.resolve(name)))
    n_seq = max(batches)
    cache = KVCache(transformer, n_ctx=ctx + 8, n_seq=n_seq)
    stepper = Stepper(transformer, cache, n_batch=max(n_seq, ctx), n_threads=threads)
    prompt = np.random.default_rng(0).integers(0, transformer.hparams.n_vocab, ctx)
    stepper.prefill(prompt, seq=0)
    cache.length[0] = ctx
    for s in range(1, n_seq):
        cache.copy_prefix(0, s, ctx)

    def step(b: int) -> None:
        # The same position every step: each overwrites the K/V the last one wrote.
        stepper.step(np.full(b, 42), np.full(b, ctx), np.arange(b), np.arange(b))

    for b in batches:  # warm-up: pages in the weights, sizes the pool
        step(b)
    times: dict[int, list[float]] = {b: [] for b in batches}
    for _ in range(repeat):
        for b in batches:
            t0 = clock()
            for _ in range(steps):
                step(b)
            times[b].append((clock() - t0) / steps)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", default="2", help="comma-separated thread counts")
    ap.add_argument("--batch", default="1,2,4,8,16", help="comma-separated batch sizes (sequences per step)")
    ap.add_argument("--ctx", type=int, default=128, help="positions each sequence already holds")
    ap.add_argument("--repeat", type=int, default=9, help="rounds over all batch sizes; medians")
    ap.add_argument("--steps", type=int, default=5, help="steps timed together per batch size and round")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall time, or this process's CPU time")
    args = ap.parse_args()
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
            times = bench_model(name, nt, batches, args.ctx, args.repeat, args.steps, clock)
            med = {b: statistics.median(t) for b, t in times.items()}
            ratio = {b: statistics.median(x / y for x, y in zip(times[b], times[1])) for b in batches}
            print(f"| {name} | {nt} | " + " | ".join(f"{1e3 * med[b]:.1f}" for b in batches) + " | "
                  + " | ".join(f"{ratio[b]:.2f}" for b in batches if b != 1) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
