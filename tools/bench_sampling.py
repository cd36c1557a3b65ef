"""Per-token cost of Sampler.sample for each filter combination on 32k, 152k and 262k vocabularies
(medians), and with --scheduler MODEL the scheduler's per-step split into forward pass, sampling
and the rest (its own Python).

    [TENSORSHARP_ISA=avx2] python tools/bench_sampling.py [--vocab 32000,151936,262144] [--reps 200]
    python tools/bench_sampling.py --scheduler smollm2-135m [--parallel 1,4] [--tokens 64] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np

from tensorsharp import kernels
from tensorsharp.engine.sampler import Sampler, SamplingParams

PENALTIES = dict(repeat_penalty=1.1, presence_penalty=0.2, frequency_penalty=0.1)
COMBOS = {
    "greedy": dict(),
    "temperature": dict(temperature=0.8),
    "top-k 40": dict(temperature=0.8, top_k=40),
    "top-p 0.9": dict(temperature=0.8, top_p=0.9),
    "min-p 0.05": dict(temperature=0.8, min_p=0.05),
    "k40 p0.9 m0.05 +pen": dict(temperature=0.8, top_k=40, top_p=0.9, min_p=0.05, **PENALTIES),
    "p0.9 +pen +bias +mask": dict(temperature=0.8, top_p=0.9, logit_bias={5: 2.0, 7: -100.0}, **PENALTIES),
    "logprobs 5": dict(temperature=0.8, n_probs=5),
}


def logits_row(kind: str, n: int, rng) -> np.ndarray:
    """spike: one dominant token (most decode steps); broad: thousands within reach of the best;
    flat: top-p 0.9 keeps most of the vocabulary (its worst case)."""
    if kind == "spike":
        x = rng.standard_normal(n).astype(np.float32) * 2
        x[rng.integers(n)] += 20
        return x
    return (rng.standard_normal(n) * (3.0 if kind == "broad" else 0.05)).astype(np.float32)


def bench_sampler(vocabs: list[int], reps: int) -> None:
    rng = np.random.default_rng(0)
    kinds = ("spike", "broad", "flat")
    print(f"ISA {kernels.isa()}; median us per token over {reps} draws")
    print(f"{'combination':24s}" + "".join(f"{n // 1000:>5d}k {k:<6s}" for n in vocabs for k in kinds))
    rows = {n: {k: logits_row(k, n, rng) for k in kinds} for n in vocabs}
    masks = {}
    for n in vocabs:   # a constraint allowing about half the vocabulary
        masks[n] = rng.integers(0, 2 ** 32, (n + 31) // 32, dtype=np.uint64).astype(np.uint32)
    for name, params in COMBOS.items():
        line = f"{name:24s}"
        for n in vocabs:
            for k in kinds:
                s = Sampler(SamplingParams(seed=1, **params), history=rng.integers(0, n, 64).tolist())
                mask = masks[n] if "mask" in name else None
                x = rows[n][k]
                s.sample(x, mask)
                times = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    s.sample(x, mask)
                    times.append(time.perf_counter() - t0)
                line += f"{statistics.median(times) * 1e6:>12.0f}"
        print(line)


def bench_scheduler(model_name: str, parallels: list[int], tokens: int, threads: int) -> None:
    from tensorsharp.engine import scheduler as sched
    from tensorsharp.engine.request import Done, Failed, GenerationRequest
    from tensorsharp.llm import Model

    model = Model(model_name, n_ctx=512)
    for parallel in parallels:
        s = sched.build(model.transformer, model.tokenizer, n_ctx=512, parallel=parallel, n_threads=threads)
        forward, sampling, steps = [], [], []
        step, fwd, sample = s._step, s.stepper.step, Sampler.sample

        def timed_forward(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fwd(*a, **kw)
            finally:
                forward.append(time.perf_counter() - t0)

        def timed_sample(self, *a, **kw):
            t0 = time.perf_counter()
            try:
                return sample(self, *a, **kw)
            finally:
                sampling[-1] += time.perf_counter() - t0

        def timed_step():
            sampling.append(0.0)
            t0 = time.perf_counter()
            step()
            steps.append(time.perf_counter() - t0)

        s._step, s.stepper.step, Sampler.sample = timed_step, timed_forward, timed_sample
        try:
            done = []
            params = SamplingParams(temperature=0.8, top_k=40, top_p=0.9, min_p=0.05, seed=3, **PENALTIES)
            with s:
                left = threading.Semaphore(0)

                def sink(ev):
                    if isinstance(ev, (Done, Failed)):
                        done.append(ev)
                        left.release()
                for i in range(parallel):
                    prompt = model.tokenize(f"Story number {i}: once upon a time")
                    s.submit(GenerationRequest(prompt, tokens, params, stop_at_eog=False), sink)
                for _ in range(parallel):
                    left.acquire(timeout=600)
        finally:
            Sampler.sample = sample
        # Steps after the first carry only decode rows once every prompt is in.
        decode = list(zip(steps, forward, sampling))[2:]
        rest = [st - f - sm for st, f, sm in decode]
        print(f"{model_name} parallel {parallel}: {len(decode)} decode steps, median per step: "
              f"total {statistics.median([d[0] for d in decode]) * 1e3:.2f} ms, "
              f"forward {statistics.median([d[1] for d in decode]) * 1e3:.2f} ms, "
              f"sampling {statistics.median([d[2] for d in decode]) * 1e3:.3f} ms, "
              f"rest (scheduler Python) {statistics.median(rest) * 1e3:.3f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", default="32000,151936,262144")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--scheduler", metavar="MODEL", help="time the scheduler's steps on this model instead")
    ap.add_argument("--parallel", default="1,4")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="forward-pass threads (0: all)")
    args = ap.parse_args()
    if args.scheduler:
        bench_scheduler(args.scheduler, [int(p) for p in args.parallel.split(",")], args.tokens, args.threads)
    else:
        bench_sampler([int(v) for v in args.vocab.split(",")], args.reps)


if __name__ == "__main__":
    main()
