"""Serving under load: our server beside llama-server, same model file, threads and parallel slots.

For each number of concurrent streaming clients (OpenAI /v1/chat/completions, distinct prompts,
greedy, ignore_eos so every reply runs to --max-tokens on both sides) it measures the aggregate
decode rate (generated tokens / wall time of the round) and time to first token (p50, p95),
alternating the two servers --rounds times and printing medians and ratios. The clients only
stamp what arrives while the streams last (testing.server.timed_stream) and parse it afterwards,
so they take little of the cores both servers need.

llama-server is built from the llama-cpp-python==0.3.36 sdist's vendor/llama.cpp with
-DLLAMA_BUILD_SERVER=ON (and -DGGML_NATIVE=ON where the CPU has no AMX); pass its path. Without
it only our server runs, and "x one client" still gives its scaling. With --spec-off our server
also runs with speculative decoding off (TENSORSHARP_SPECULATIVE=0) in each round, and the table
gives speculation's ratio to it, measured in the same run. --kv-cache-type q8_0 (or q4_0) gives
both servers that KV cache (llama-server: -ctk/-ctv with flash attention on).

    python tools/bench_serve.py [--llama-server PATH] [--model qwen2.5-coder-0.5b] [--threads 2]
        [--parallel 8] [--clients 1,2,4,8,16] [--max-tokens 128] [--rounds 2] [--workload prose|code]
        [--llama-args '--poll 0'] [--spec-off] [--kv-cache-type f16|q8_0|q4_0]
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from tensorsharp import store
from tensorsharp.testing.server import running_process, timed_stream

TOPICS = ["the sea", "a clock", "bread", "a dragon", "rain", "the moon", "a library", "trains", "snow",
          "a garden", "bees", "a lighthouse", "copper", "owls", "a market", "glass"]
FUNCTION = '''def moving_average(values, window):
    out = []
    for i in range(len(values) - window + 1):
        total = 0
        for j in range(window):
            total += values[i + j]
        out.append(total / window)
    return out
'''


def prompt(workload: str, i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    if workload == "code":
        return (f"Here is a Python function:\n\n```python\n{FUNCTION}```\n\nRewrite the whole function with "
                f"the parameter `window` renamed to `size` (case {i}, about {topic}). Reply with the code only.")
    return f"Write a long story about {topic} (story {i})."


def one_stream(base: str, model: str, text: str, max_tokens: int, out: list, lock: threading.Lock) -> None:
    t0 = time.perf_counter()
    lines = timed_stream(base, "/v1/chat/completions", {
        "model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
        "temperature": 0, "stream": True, "ignore_eos": True})
    first, n = None, 0
    for t, line in lines:
        if not line.startswith(b"data: {"):
            continue
        choices = json.loads(line[6:])["choices"]
        if choices and choices[0].get("delta", {}).get("content"):
            n += 1
            if first is None:
                first = t
    with lock:
        out.append((first - t0 if first else float("nan"), n, lines[-1][0]))


def round_of(base: str, model: str, clients: int, max_tokens: int, workload: str, offset: int) -> dict:
    results, lock = [], threading.Lock()
    threads = [threading.Thread(target=one_stream, args=(base, model, prompt(workload, offset + i), max_tokens,
                                                         results, lock)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = max(end for _, _, end in results) - t0
    ttft = sorted(f for f, _, _ in results)
    return {"tok_s": sum(n for _, n, _ in results) / wall, "ttft_p50": statistics.median(ttft),
            "ttft_p95": ttft[min(len(ttft) - 1, int(0.95 * len(ttft)))], "tokens": sum(n for _, n, _ in results)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--llama-server", help="its binary; without it only our server is measured")
    p.add_argument("--model", default="qwen2.5-coder-0.5b")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--clients", default="1,2,4,8,16")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--ctx", type=int, default=1024, help="context per sequence on both servers")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workload", choices=["prose", "code"], default="prose")
    p.add_argument("--llama-args", default="", help="more llama-server arguments, e.g. '--poll 0' (its "
                   "threads sleep rather than spin while waiting for work)")
    p.add_argument("--spec-off", action="store_true", help="also run ours with speculative decoding off")
    p.add_argument("--kv-cache-type", default="f16", choices=["f16", "q8_0", "q4_0"], help="both servers' KV cache")
    args = p.parse_args(argv)
    path = store.resolve(args.model)
    clients = [int(c) for c in args.clients.split(",")]
    ours = ["-m", "tensorsharp", "serve", "--model", str(path), "--port", "{port}", "--threads", str(args.threads),
            "--parallel", str(args.parallel), "--ctx", str(args.ctx), "--kv-cache-type", args.kv_cache_type]
    llama = ["-m", str(path), "--port", "{port}", "--host", "127.0.0.1", "-t", str(args.threads),
             "-tb", str(args.threads), "-np", str(args.parallel), "-c", str(args.ctx * args.parallel),
             "--no-webui", "-ngl", "0", *shlex.split(args.llama_args)]
    if args.kv_cache_type != "f16":
        llama += ["-ctk", args.kv_cache_type, "-ctv", args.kv_cache_type, "-fa", "on"]
    table: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            servers = [("ours", ours, sys.executable, {})]
            if args.spec_off:
                servers.append(("ours-nospec", ours, sys.executable, {"TENSORSHARP_SPECULATIVE": "0"}))
            if args.llama_server:
                servers.append(("llama", llama, args.llama_server, {}))
            for name, cmd, exe, env in servers:
                with running_process(cmd, Path(tmp), env={"TENSORSHARP_MAX_QUEUE": "64", **env}, timeout=300,
                                     executable=exe) as (base, _):
                    # Ours lists every model of the store: ask for the file it was started with.
                    model = path.name if name.startswith("ours") else \
                        requests.get(base + "/v1/models", timeout=5).json()["data"][0]["id"]
                    round_of(base, model, 1, 8, args.workload, 999)   # warm-up
                    for k in clients:
                        r = round_of(base, model, k, args.max_tokens, args.workload, 100 * rnd + k)
                        table.setdefault((name, k), []).append(r)
                        print(f"round {rnd + 1} {name} clients={k}: {r['tok_s']:.1f} tok/s, "
                              f"ttft p50 {r['ttft_p50']:.2f}s p95 {r['ttft_p95']:.2f}s", file=sys.stderr, flush=True)
    med = {key: {m: statistics.median(r[m] for r in rs) for m in ("tok_s", "ttft_p50", "ttft_p95")}
           for key, rs in table.items()}
    extra = f", llama-server {args.llama_args}" if args.llama_args else ""
    print(f"\n{args.model}, {args.threads} threads, parallel {args.parallel}, {args.max_tokens} tokens per reply, "
          f"workload {args.workload}, KV cache {args.kv_cache_type}, medians of {args.rounds}{extra}\n")
    one = med.get(("ours", 1), {}).get("tok_s")
    off_one = med.get(("ours-nospec", 1), {}).get("tok_s")
    print("| clients | ours tok/s | x one client | spec off tok/s | x one client | spec on / off "
          "| llama-server tok/s | ratio | ours TTFT p50 / p95 s | llama-server TTFT p50 / p95 s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in clients:
        o, l, f = med[("ours", k)], med.get(("llama", k)), med.get(("ours-nospec", k))
        scale = f"{o['tok_s'] / one:.2f}x" if one else "-"
        off = f"{f['tok_s']:.1f} | {f['tok_s'] / off_one:.2f}x | {o['tok_s'] / f['tok_s']:.2f}" if f and off_one \
            else "- | - | -"
        theirs = (f"{l['tok_s']:.1f} | {o['tok_s'] / l['tok_s']:.2f}x", f"{l['ttft_p50']:.2f} / {l['ttft_p95']:.2f}") \
            if l else ("- | -", "-")
        print(f"| {k} | {o['tok_s']:.1f} | {scale} | {off} | {theirs[0]} | {o['ttft_p50']:.2f} / {o['ttft_p95']:.2f} | "
              f"{theirs[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
