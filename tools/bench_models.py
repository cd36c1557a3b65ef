"""Memory of a server that loads models on demand: RSS after each model is requested in turn,
under a memory budget (TENSORSHARP_MAX_MEMORY) chosen to hold some of them and not all.

For each model, in the order given, it sends one short /api/generate, then reads the server's
VmRSS (and VmHWM, the peak) from /proc and /api/ps (what is loaded, each model's counted size).

    python tools/bench_models.py [--models smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b]
        [--budget-mb 1000] [--ctx 256] [--rounds 1] [--unload] [--json]

--calibrate instead measures, for each model in a fresh process, what loading it adds to the
process's anonymous memory besides its KV cache (the vocabulary's tables), what its first request
adds (working buffers) and its first constrained request (llguidance's vocabulary): the figures
catalog.VOCAB_TOKEN_BYTES, MERGE_BYTES, WORKING_BYTES and CONSTRAINT_TOKEN_BYTES are set from.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

import numpy as np
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


def measure_one(name: str, ctx: int) -> dict:
    """In this process: the anonymous memory each step of serving one model adds (after a
    collection and malloc_trim, so that only what is held counts)."""
    import ctypes
    import gc

    from tensorsharp.server.app import create_app
    from tensorsharp.server.model import ServedModel
    libc = ctypes.CDLL("libc.so.6")

    def anon() -> int:
        gc.collect()
        libc.malloc_trim(0)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))

    def ask(client, **kw):
        r = client.post("/api/generate", json={"model": name, "prompt": "Hello there, how are you?", "stream": False,
                                               "options": {"num_predict": 4}, **kw})
        assert r.status_code == 200, r.get_json()
    from tensorsharp.server.routes import embeddings, llamacpp, manage, meta, ollama, openai, responses, webui  # noqa: F401
    before = anon()
    served = ServedModel.load(name, n_ctx=ctx, parallel=1, cache_slots=0)
    loaded = anon()
    client = create_app(served).test_client()
    ask(client)
    ran = anon()
    ask(client, format="json")
    constrained = anon()
    f = served.facts
    return {"model": name, "n_vocab": f.n_vocab, "n_merges": f.n_merges,
            "tables": loaded - before - served.scheduler.cache.nbytes, "working": ran - loaded,
            "constraint": constrained - ran}


def calibrate(names: list[str], ctx: int) -> None:
    rows = []
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--measure-one", name, "--ctx", str(ctx)], check=True,
                             capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"{'model':<22} {'n_vocab':>8} {'merges':>8} {'tables MB':>10} {'working MB':>11} {'constraint MB':>14}"
          f" {'B/token':>8}")
    for r in rows:
        print(f"{r['model']:<22} {r['n_vocab']:8d} {r['n_merges']:8d} {r['tables'] / MB:10.1f} {r['working'] / MB:11.1f}"
              f" {r['constraint'] / MB:14.1f} {r['constraint'] / r['n_vocab']:8.0f}")
    # tables = a * n_vocab + b * n_merges, fitted over the models
    a, b = np.linalg.lstsq(np.array([[r["n_vocab"], r["n_merges"]] for r in rows], float),
                           np.array([r["tables"] for r in rows], float), rcond=None)[0]
    print(f"tables fit: {a:.0f} bytes a token + {b:.0f} bytes a merge; worst model over the fit: "
          f"{max(r['tables'] - a * r['n_vocab'] - b * r['n_merges'] for r in rows) / MB:.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b")
    ap.add_argument("--budget-mb", type=int, default=1000, help="the default holds any two of the three, not all")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=1, help="times to go through the list")
    ap.add_argument("--unload", action="store_true", help="then unload each model (keep_alive 0) and show RSS")
    ap.add_argument("--json", action="store_true", help="ask for JSON output (each model builds its constraint vocabulary)")
    ap.add_argument("--calibrate", action="store_true", help="measure what each model holds (see above)")
    ap.add_argument("--measure-one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_one:
        print(json.dumps(measure_one(args.measure_one, args.ctx)))
        return
    names = args.models.split(",")
    if args.calibrate:
        calibrate(names, args.ctx)
        return
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
                                                                "options": {"num_predict": 4},
                                                                **({"format": "json"} if args.json else {})},
                                  timeout=300)
                r.raise_for_status()
                ps = requests.get(base + "/api/ps").json()["models"]
                m = proc_memory(proc.pid)
                counted = sum(p["size"] for p in ps)
                print(f"{name:<22} {m['VmRSS'] / MB:7.0f} {m['VmHWM'] / MB:8.0f} {counted / MB:11.0f}  "
                      + ", ".join(p["name"] for p in ps))
        if args.unload:
            for p in requests.get(base + "/api/ps").json()["models"]:
                requests.post(base + "/api/generate", json={"model": p["name"], "keep_alive": 0}).raise_for_status()
                m = proc_memory(proc.pid)
                print(f"{'unload ' + p['name']:<22} {m['VmRSS'] / MB:7.0f} {m['VmHWM'] / MB:8.0f}")


if __name__ == "__main__":
    main()
