"""Memory of a server that loads models on demand: RSS after each model is requested in turn,
under a memory budget (TENSORSHARP_MAX_MEMORY) chosen to hold some of them and not all.

For each model, in the order given, it sends one short /api/generate, then reads the server's
VmRSS (and VmHWM, the peak) from /proc and /api/ps (what is loaded, each model's counted size).

    python tools/bench_models.py [--models smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b]
        [--budget-mb 760] [--ctx 256] [--rounds 1]
"""
from __future__ import annotations

import argparse
import tempfile

import requests

from tensorsharp import store
from tensorsharp.testing.server import running_process, serve_args

MB = 1 << 20


def proc_memory(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b")
    ap.add_argument("--budget-mb", type=int, default=760)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=1, help="times to go through the list")
    args = ap.parse_args()
    names = args.models.split(",")
    for name in names:
        store.ensure(store.lookup(name))
    env = {"TENSORSHARP_MAX_MEMORY": str(args.budget_mb * MB), "TENSORSHARP_CACHE_SLOTS": "0",
           "TENSORSHARP_MAX_LOADED": str(len(names))}
    with tempfile.TemporaryDirectory() as work, running_process(
            serve_args(names[0], "--ctx", str(args.ctx), "--parallel", "1", "--threads", "2"), work, env=env) as (base, proc):
        print(f"budget {args.budget_mb} MB; file sizes: " + ", ".join(
            f"{n} {store.cached_path(store.lookup(n)).stat().st_size / MB:.0f} MB" for n in names))
        print(f"{'after':<22} {'RSS MB':>7} {'peak MB':>8} {'counted MB':>11}  loaded")
        m = proc_memory(proc.pid)
        print(f"{'start':<22} {m['VmRSS'] / MB:7.0f} {m['VmHWM'] / MB:8.0f}")
        for _ in range(args.rounds):
            for name in names:
                r = requests.post(base + "/api/generate", json={"model": name, "prompt": "Hello", "stream": False,
                                                                "options": {"num_predict": 4}}, timeout=300)
                r.raise_for_status()
                ps = requests.get(base + "/api/ps").json()["models"]
                m = proc_memory(proc.pid)
                counted = sum(p["size"] for p in ps)
                print(f"{name:<22} {m['VmRSS'] / MB:7.0f} {m['VmHWM'] / MB:8.0f} {counted / MB:11.0f}  "
                      + ", ".join(p["name"] for p in ps))


if __name__ == "__main__":
    main()
