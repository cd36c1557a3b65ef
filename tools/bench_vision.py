"""Image encode time of a real-size projector with random weights (default: Gemma 3's SigLIP-so400m,
896 px, patch 14, 1152 wide, 4304 ff, 27 blocks, 16 heads, pooled to 256 tokens of 2560).

    python tools/bench_vision.py [--layers 27] [--threads 2] [--weight-type F16] [--repeat 1]

Time is linear in the block count, so --layers 3 gives a quick estimate (the tool prints the
per-block time and the extrapolation to the full model). The file goes to a temporary folder.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tensorsharp import kernels
from tensorsharp.testing.tiny_vision import write_tiny_projector
from tensorsharp.vision import load_projector

SO400M = dict(image_size=896, patch_size=14, hidden_size=1152, intermediate_size=4304, num_attention_heads=16)
FULL_LAYERS = 27


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=FULL_LAYERS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weight-type", default="F16", choices=["F32", "F16", "Q8_0"])
    ap.add_argument("--n-embd-text", type=int, default=2560)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mmproj-bench.gguf"
        t0 = time.perf_counter()
        write_tiny_projector(path, n_embd_text=args.n_embd_text, weight_type=args.weight_type,
                             num_hidden_layers=args.layers, mm_tokens_per_image=256, **SO400M)
        print(f"wrote {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s")
        enc = load_projector(path, n_threads=args.threads)
        pixels = np.random.default_rng(0).uniform(-1, 1, (3, enc.image_size, enc.image_size)).astype(np.float32)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = enc.encode(pixels)
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        print(f"isa {kernels.isa()}, {args.threads} threads, {args.weight_type}, {args.layers} blocks: "
              f"encode {t:.2f} s -> {out.shape[0]} x {out.shape[1]}")
        if args.layers != FULL_LAYERS and args.layers > 0:
            print(f"extrapolated to {FULL_LAYERS} blocks: {t / args.layers * FULL_LAYERS:.1f} s "
                  f"(patch embedding and projector counted per block, so slightly high)")


if __name__ == "__main__":
    main()
