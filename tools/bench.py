"""End-to-end speed: prompt processing (512 tokens) and decode (128 tokens), ours beside llama.cpp.

The models are the store's (--models) or any GGUF files (--model PATH, repeatable); with --model
alone only those files run.

Each measurement runs in its own process (clean memory, honest peak RSS); ours and llama.cpp
alternate, --repeat times, and the table shows medians. llama.cpp is measured through
llama-cpp-python when it is installed (build it without AMX, see the README).

The bound columns: decode cannot beat the read-bandwidth probe (measured here, per thread
count) divided by the weight bytes a token reads; prompt processing cannot beat the nominal
int8 rate of AVX-512 VNNI (2 x 64 multiply-adds per cycle per core at the clock below) divided
by 2 x the multiply-adds per token of the matrices a prompt token passes through.

    python tools/bench.py [--models smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b] [--model PATH ...]
                          [--threads 2,1] [--repeat 3] [--llama-python PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

MODELS = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"]
# The stacked (n_expert, rows, cols) expert matrices of a mixture-of-experts file.
EXPERT_SUFFIXES = ("ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight")
NOMINAL_GHZ = 2.0  # a conservative all-core clock for the compute bound
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
    kv_mb = (m.stepper.cache.k.nbytes + m.stepper.cache.v.nbytes) / 2**20
    return {"pp": n_prompt / t_pp, "tg": n_gen / t_tg, "kv_mb": kv_mb}


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
    if args.worker == "probe":
        print(json.dumps({"gbs": probe_bandwidth(args.t)}))
        return 0
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


def weight_costs(path: str) -> tuple[int, int]:
    """(bytes of weights a decoded token reads, multiply-adds per prompt token in the matrices).

    Every tensor is read once per token except the token embedding, of which only one row is
    read, unless it doubles as the (tied) output matrix, and the experts of a mixture, of which a
    token reads expert_used_count of expert_count. A prompt token skips the output matrix."""
    from tensorsharp.gguf import GGUFFile
    g = GGUFFile(path)
    tied = "output.weight" not in g.tensors
    arch = g.metadata.get("general.architecture", "")
    share = (g.metadata.get(f"{arch}.expert_used_count", 1), g.metadata.get(f"{arch}.expert_count", 1))
    nbytes = macs = 0
    for name, t in g.tensors.items():
        n = int(t.data.nbytes)
        elements = 1
        for d in t.shape:
            elements *= int(d)
        if name == "token_embd.weight":
            nbytes += n if tied else n // int(t.shape[1])
            continue
        if name.endswith(EXPERT_SUFFIXES):
            nbytes += n * share[0] // share[1]
            macs += elements * share[0] // share[1]
            continue
        nbytes += n
        if len(t.shape) == 2 and name != "output.weight":
            macs += elements
    return nbytes, macs


def probe_bandwidth(threads: int) -> float:
    """GB/s read by `threads` threads. Run in a worker: Linux keeps a process's peak RSS across
    fork and exec, so a parent that once held the probe's buffer would inflate every worker's."""
    from tensorsharp import _kernels
    buf = np.ones(512 << 20, dtype=np.uint8)
    _kernels.read_probe(buf, threads)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        _kernels.read_probe(buf, threads)
        times.append(time.perf_counter() - t0)
    return buf.nbytes / statistics.median(times) / 1e9


def has_llama(args) -> bool:
    probe = [args.llama_python or sys.executable, "-c", "import llama_cpp"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def compare(path: str, threads: int, args, have_llama: bool) -> dict:
    """Medians of args.repeat alternating runs of ours and llama.cpp on one file: {"ours": {key:
    median}, "llama": ... or None, "runs": {engine: [results]}}."""
    runs = {"ours": [], "llama": []}
    for _ in range(args.repeat):
        for engine in ("ours", "llama") if have_llama else ("ours",):
            res = measure(engine, path, threads, args)
            if res is not None:
                runs[engine].append(res)

    def med(engine):
        return {k: statistics.median(r[k] for r in runs[engine]) for k in ("pp", "tg")} if runs[engine] else None
    return {"ours": med("ours"), "llama": med("llama"), "runs": runs}


def cells(res: dict, key: str) -> tuple[str, str, str]:
    """(ours, llama.cpp, ratio) of one measure, formatted."""
    ours, ref = res["ours"][key], res["llama"][key] if res["llama"] else None
    if ref is None:
        return f"{ours:.1f}", "-", "-"
    return f"{ours:.1f}", f"{ref:.1f}", f"{ours / ref:.2f}x"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help=f"store models (default: {','.join(MODELS)} unless --model is given)")
    ap.add_argument("--model", action="append", default=[], metavar="PATH", help="a GGUF file (repeatable)")
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--n-prompt", type=int, default=512)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3, help="runs per engine and row; the table shows medians")
    ap.add_argument("--llama-python", help="interpreter that has llama-cpp-python (default: this one)")
    ap.add_argument("--worker", choices=["ours", "llama", "probe"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--t", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    from tensorsharp import store
    names = args.models.split(",") if args.models else [] if args.model else MODELS
    files = [(name, str(store.resolve(name))) for name in names]
    for path in args.model:
        if not os.path.isfile(path):
            ap.error(f"--model {path}: no such file")
        files.append((os.path.basename(path), path))
    have_llama = has_llama(args)
    if not have_llama:
        print("llama-cpp-python is not installed: measuring tensorsharp alone", file=sys.stderr)
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.2f} > 0.5: the machine is busy, figures will be noisy",
              file=sys.stderr)
    threads = [int(x) for x in args.threads.split(",")]
    bandwidth = {t: measure("probe", "", t, args)["gbs"] for t in threads}
    print("read-bandwidth probe: " + ", ".join(f"{t} thread(s) {bw:.1f} GB/s" for t, bw in bandwidth.items()))
    print(f"medians of {args.repeat} runs each; bounds: decode = probe / bytes per token, prompt = "
          f"{NOMINAL_GHZ:g} GHz x 128 int8 MACs/cycle/thread / MACs per token")
    print(f"| model | threads | pp{args.n_prompt} ours | pp llama.cpp | ratio | pp bound | tg{args.n_gen} ours | "
          "tg llama.cpp | ratio | tg bound | peak RSS ours MB | RSS budget MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, path in files:
        nbytes, macs = weight_costs(path)
        for t in threads:
            res = compare(path, t, args, have_llama)
            if res["ours"] is None:
                continue
            pp, pp_ref, pp_ratio = cells(res, "pp")
            tg, tg_ref, tg_ratio = cells(res, "tg")
            pp_bound = NOMINAL_GHZ * 1e9 * 128 * t / macs
            tg_bound = bandwidth[t] * 1e9 / nbytes
            ours = res["runs"]["ours"]
            rss = max(r["rss_mb"] for r in ours)
            # The ceiling: the model file plus the KV cache plus 150 MB.
            budget = os.path.getsize(path) / 2**20 + ours[0]["kv_mb"] + 150
            print(f"| {name} | {t} | {pp} | {pp_ref} | {pp_ratio} | {pp_bound:.0f} | {tg} | {tg_ref} | {tg_ratio} | "
                  f"{tg_bound:.1f} | {rss:.0f} | {budget:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
