"""Where a decode batch's extra time goes in the few-token gemm: per type and shape, a matrix's fixed
cost (unpacking its weights, paid once per call) against its cost per activation row.

A product of B rows costs about fixed + B * per_row while it is compute-bound. "hot" repeats a
slice of the matrix small enough to stay in cache, so it measures compute alone; "cold" cycles
through copies that exceed the last-level cache (in huge pages, as a model holds them), as a
forward pass streams its weights. The step ratio B = 8 over B = 1 that a decode batch sees is
close to cold(8) / cold(1): it stays low only
where cold(1) (memory) is well above hot(1) (the fixed compute) and the rows' compute hides
under the stream. Times are this process's CPU time on one thread (a shared machine's other
tenants then drop out), scaled to the whole matrix; fixed and per_row are a least-squares line
through the hot points.

With --packed each type that has a packed gemm gets a second line, its weights repacked at
"load" (kernels.repack) as models do by default, timed in the same run.

    python tools/bench_few_tokens.py [--types Q4_1,Q5_0,Q8_0,Q4_K,Q6_K] [--shapes 640x262144,896x4864]
                                     [--tokens 1,2,4,8,16] [--repeat 5] [--packed]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from tensorsharp import kernels
from tensorsharp.gguf.types import tensor_type
from tensorsharp.testing.quants import random_weights

# (cols, rows): SmolLM2's FFN and tied output, Qwen2.5-0.5B's FFN up and down, Gemma 3's output
# and FFN down; a type skips the shapes whose rows its blocks do not divide (k-quants: the downs)
SHAPES = [(576, 1536), (576, 49152), (896, 4864), (4864, 896), (640, 262144), (2048, 640)]
TYPES = ["Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"]
HOT_ROWS = 1024  # a slice that stays in L2 for every type and shape above
COLD_BYTES = 256 << 20  # past the last-level cache


def cpu_time(fn, calls: int, repeat: int) -> float:
    """Median CPU seconds of one call over repeat runs of `calls` calls."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        for _ in range(calls):
            fn()
        times.append((time.process_time() - t0) / calls)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--shapes", default=None, help="cols x rows, e.g. 640x262144,896x4864")
    ap.add_argument("--tokens", default="1,2,4,8,16", help="activation rows per call")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--packed", action="store_true", help="also time the repacked weights")
    args = ap.parse_args()
    shapes = SHAPES if not args.shapes else [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    tokens = [int(t) for t in args.tokens.split(",")]
    rng = np.random.default_rng(1)
    print(f"isa {kernels.isa()}, 1 thread, CPU ms per whole matrix")
    print("| type | cols x rows | " + " | ".join(f"hot {n}" for n in tokens) + " | fixed | per row | "
          + " | ".join(f"cold {n}" for n in tokens) + " | cold 8/1 |")
    print("|---|---|" + "---|" * (2 * len(tokens) + 3))
    for type_name in args.types.split(","):
        for cols, rows in shapes:
            if cols % tensor_type(type_name).block_size:
                continue
            hot_w = random_weights(type_name, min(rows, HOT_ROWS), cols, rng)
            w = random_weights(type_name, rows, cols, rng)
            layouts = [False] + ([True] if args.packed and kernels.packs(type_name, rows) else [])
            for packed in layouts:
                if packed:
                    hot_w, w = kernels.repack(hot_w, type_name, cols), kernels.repack(w, type_name, cols)
                label = type_name + (" packed" if packed else "")
                row(label, type_name, cols, rows, hot_w, w, tokens, packed, args.repeat, rng)
    return 0


def row(label: str, type_name: str, cols: int, rows: int, hot_w: np.ndarray, w: np.ndarray, tokens: list[int],
        packed: bool, repeat: int, rng) -> None:
    """One line of the table: hot and cold times of (rows, cols) weights in one layout."""
    scale = rows / hot_w.shape[0]
    # One after another in huge pages, as a loaded model's weights are (kernels.WeightArena).
    arena = kernels.WeightArena()
    copies = [arena.empty(w.shape) for _ in range(max(1, COLD_BYTES // w.nbytes))]
    for c in copies:
        c[...] = w
    hot, cold = [], []
    for n in tokens:
        x = rng.standard_normal((n, cols), dtype=np.float32)
        hot.append(scale * cpu_time(lambda: kernels.matmul(hot_w, type_name, x, n_threads=1, packed=packed),
                                    max(1, int(2e8 // (hot_w.nbytes * n))), repeat))
        cold.append(cpu_time(lambda: [kernels.matmul(c, type_name, x, n_threads=1, packed=packed) for c in copies],
                             1, repeat) / len(copies))
    per_row, fixed = np.polyfit(tokens, hot, 1)
    ratio = f"{cold[tokens.index(8)] / cold[tokens.index(1)]:.2f}" if 1 in tokens and 8 in tokens else ""
    print(f"| {label} | {cols}x{rows} | " + " | ".join(f"{1e3 * t:.2f}" for t in hot)
          + f" | {1e3 * fixed:.2f} | {1e3 * per_row:.3f} | " + " | ".join(f"{1e3 * t:.2f}" for t in cold)
          + f" | {ratio} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
