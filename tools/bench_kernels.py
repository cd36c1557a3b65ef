"""Kernel benchmark: weight GB/s and GFLOP/s of matvec and matmul per type, ISA and thread count.

Matrices are real layer shapes. "cold" cycles through enough copies of the matrix to
exceed the last-level cache, so weights stream from DRAM as in a real forward pass, and is
compared with a read-bandwidth probe run just before it (the median of those ratios);
"hot" repeats one matrix that may sit in cache. Matvecs run back to back in one C call with a
barrier after each (as the forward pass runs them), so Python's cost per call is not counted.

    python tools/bench_kernels.py [--types Q4_0,Q4_K] [--isa avx512vnni] [--threads 1,2]
    python tools/bench_kernels.py --types Q4_K,iquants   # a group name stands for its types
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from tensorsharp import _kernels, kernels
from tensorsharp.gguf.types import tensor_type
from tensorsharp.testing.quants import random_weights

SHAPES = [(576, 1536), (896, 4864), (4864, 896), (2048, 640), (640, 262144)]  # (cols, rows): GGUF ne0, ne1
DEFAULT_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K", "Q5_K", "Q3_K", "Q2_K", "F16"]
# The codebook i-quants of large MoE uploads: compute-bound at 1.5-3.4 bits per weight, so their
# GFLOP/s says more than their GB/s.
TYPE_GROUPS = {"iquants": ["IQ4_XS", "IQ3_S", "IQ3_XXS", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S"]}
COLD_BYTES = 512 << 20  # well past the last-level cache


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def probe_bandwidth(buf, n_threads: int) -> float:
    _kernels.read_probe(buf, n_threads)
    return buf.nbytes / median_time(lambda: _kernels.read_probe(buf, n_threads), 5) / 1e9


def matvec_runner(w_copies, type_name, cols, n_threads, isa):
    x = np.random.default_rng(0).standard_normal(cols, dtype=np.float32)
    y = np.empty(w_copies[0].shape[0], dtype=np.float32)
    type_id = tensor_type(type_name).id

    def run():
        _kernels.matvec_stream(w_copies, type_id, cols, x, y, n_threads, isa)

    run()
    return run


def bench_matvec(w_copies, type_name, cols, n_threads, isa) -> float:
    return median_time(matvec_runner(w_copies, type_name, cols, n_threads, isa), 5) / len(w_copies)


def bench_cold(w_copies, type_name, cols, n_threads, isa, probe_buf, repeat: int) -> tuple[float, float]:
    """Seconds per matrix streamed from DRAM, and the share of the read probe it reaches.

    Other tenants of a shared machine move both figures from one second to the next, so each
    run sits right after a probe run and the share is the median of those adjacent ratios."""
    run = matvec_runner(w_copies, type_name, cols, n_threads, isa)
    nbytes = sum(w.nbytes for w in w_copies)
    times, shares = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        _kernels.read_probe(probe_buf, n_threads)
        t_probe = time.perf_counter() - t0
        t0 = time.perf_counter()
        run()
        t = time.perf_counter() - t0
        times.append(t / len(w_copies))
        shares.append((nbytes / t) / (probe_buf.nbytes / t_probe))
    return statistics.median(times), statistics.median(shares)


def bench_matmul(w, type_name, cols, n_tok, n_threads, isa) -> float:
    x = np.random.default_rng(0).standard_normal((n_tok, cols), dtype=np.float32)
    kernels.matmul(w, type_name, x, n_threads=n_threads, isa=isa)
    return median_time(lambda: kernels.matmul(w, type_name, x, n_threads=n_threads, isa=isa), 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default=",".join(DEFAULT_TYPES))
    ap.add_argument("--isa", default=None, help="comma list; default: scalar and the best level")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prefill", type=int, default=64, help="tokens in the matmul case (0: skip)")
    ap.add_argument("--shapes", default=None, help="e.g. 576x1536,896x4864")
    ap.add_argument("--repeat", type=int, default=7, help="cold runs, each right after a probe run; medians")
    args = ap.parse_args()

    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.2f} > 0.5: the machine is busy, figures will be noisy",
              file=sys.stderr)
    isas = args.isa.split(",") if args.isa else sorted({"scalar", kernels.isa()},
                                                        key=kernels.available_isas().index)
    threads = [int(t) for t in args.threads.split(",")]
    shapes = SHAPES if not args.shapes else [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    rng = np.random.default_rng(1)

    probe_buf = np.ones(COLD_BYTES, dtype=np.uint8)
    for nt in threads:
        print(f"read-bandwidth probe, {nt} thread(s): {probe_bandwidth(probe_buf, nt):.1f} GB/s")
    print()
    print("| type | shape (cols x rows) | isa | threads | matvec cold GB/s | cold % of probe | matvec hot GB/s | "
          f"matvec GFLOP/s | matmul n={args.prefill} GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    type_names = [t for name in args.types.split(",") for t in TYPE_GROUPS.get(name, [name])]
    for type_name in type_names:
        for cols, rows in shapes:
            if cols % tensor_type(type_name).block_size:
                continue  # e.g. k-quants on 576-wide rows: no real model stores that
            w = random_weights(type_name, rows, cols, rng)
            nbytes = w.nbytes
            copies = max(1, COLD_BYTES // nbytes)
            cold = [w] + [w.copy() for _ in range(copies - 1)] if copies > 1 else [w]
            flops = 2.0 * rows * cols
            for isa in isas:
                for nt in threads:
                    t_cold, share = bench_cold(cold, type_name, cols, nt, isa, probe_buf, args.repeat)
                    t_hot = bench_matvec([w] * 8, type_name, cols, nt, isa)
                    mm = ""
                    if args.prefill and rows * cols <= 64 << 20 and not (isa == "scalar" and rows * cols > 8 << 20):
                        t_mm = bench_matmul(w, type_name, cols, args.prefill, nt, isa)
                        mm = f"{flops * args.prefill / t_mm / 1e9:.1f}"
                    print(f"| {type_name} | {cols}x{rows} | {isa} | {nt} | {nbytes / t_cold / 1e9:.1f} | {100 * share:.0f}% | "
                          f"{nbytes / t_hot / 1e9:.1f} | {flops / t_hot / 1e9:.1f} | {mm} |", flush=True)
            del cold
    return 0


if __name__ == "__main__":
    sys.exit(main())
