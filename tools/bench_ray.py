"""Replicas on a Ray cluster against one process: aggregate decode rate and session affinity.

Starts `tensorsharp serve --ray local --replicas N` (a private Ray cluster on this host) for each N
of --replicas, and the single-process server at 1 thread and at N threads for comparison. On each
it measures, with --clients concurrent streaming clients (OpenAI API, distinct prompts, greedy,
ignore_eos so each reply runs to --max-tokens), the aggregate decode rate (generated tokens / wall
time of the round, median of --rounds), and for the Ray servers the share of follow-up turns of
multi-turn conversations (OpenAI API, no session: the router sees only the prompt) whose prompt
reused at least the previous turn's prompt from the KV cache.

    python tools/bench_ray.py [--model smollm2-135m] [--replicas 1,2] [--clients 4] [--max-tokens 128]
        [--rounds 3] [--conversations 16] [--turns 4]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time

import requests

from tensorsharp.testing.server import running

TOPICS = ["the sea", "a clock", "bread", "a dragon", "rain", "the moon", "a library", "trains", "snow",
          "a garden", "bees", "a lighthouse", "copper", "owls", "a market", "glass"]


def decode_rate(base: str, model: str, clients: int, max_tokens: int, round_no: int) -> float:
    """Generated tokens per second over one round of `clients` concurrent streams."""
    counts = [0] * clients

    def stream(k: int) -> None:
        topic = TOPICS[(k + round_no * clients) % len(TOPICS)]
        with requests.post(base + "/v1/chat/completions", stream=True, timeout=600, json={
                "model": model, "messages": [{"role": "user", "content": f"Write a long story about {topic} "
                                                                         f"(story {round_no}.{k})."}],
                "max_tokens": max_tokens, "temperature": 0, "stream": True, "ignore_eos": True,
                "stream_options": {"include_usage": True}}) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if line.startswith(b"data: {") and b'"usage": {' in line:
                    counts[k] = int(line.split(b'"completion_tokens": ')[1].split(b",")[0])

    threads = [threading.Thread(target=stream, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def affinity(base: str, model: str, clients: int, conversations: int, turns: int) -> tuple[int, int]:
    """(follow-up turns that reused the previous prompt, follow-up turns)."""
    hits, total, lock = 0, 0, threading.Lock()

    def conversation(k: int) -> None:
        nonlocal hits, total
        messages, previous = [], None
        for t in range(turns):
            messages.append({"role": "user", "content": f"Conversation {k}, question {t}: tell me one fact "
                                                        f"about {TOPICS[(k + t) % len(TOPICS)]}."})
            r = requests.post(base + "/v1/chat/completions", timeout=600, json={
                "model": model, "messages": messages, "max_tokens": 24, "temperature": 0}).json()
            if previous is not None:
                with lock:
                    total += 1
                    hits += r["usage"]["prompt_tokens_details"]["cached_tokens"] >= previous
            previous = r["usage"]["prompt_tokens"]
            messages.append({"role": "assistant", "content": r["choices"][0]["message"]["content"]})

    workers = [threading.Thread(target=lambda w=w: [conversation(k) for k in range(w, conversations, clients)])
               for w in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return hits, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--replicas", default="1,2")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--parallel", type=int, default=2, help="parallel slots of each replica (and of one process)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conversations", type=int, default=16)
    ap.add_argument("--turns", type=int, default=4)
    args = ap.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]
    common = ["-m", "tensorsharp", "serve", "--model", args.model, "--port", "{port}", "--ctx", "2048",
              "--threads", "1", "--parallel", str(args.parallel)]
    setups = [(f"one process, 1 thread", common, False)]
    for n in counts:
        if n > 1:
            setups.append((f"one process, {n} threads, parallel {n * args.parallel}",
                           [*common[:-4], "--threads", str(n), "--parallel", str(n * args.parallel)], False))
        setups.append((f"ray, {n} replica{'s' * (n > 1)} x 1 thread", [*common, "--ray", "local", "--replicas", str(n)],
                       True))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd, ray in setups:
            with running(cmd, tmp, timeout=300) as base:
                decode_rate(base, args.model, args.clients, 8, -1)   # warm-up
                rates = [decode_rate(base, args.model, args.clients, args.max_tokens, r) for r in range(args.rounds)]
                hit = affinity(base, args.model, args.clients, args.conversations, args.turns) if ray else None
            rows.append((name, statistics.median(rates), rates, hit))
            print(f"{name}: {statistics.median(rates):.1f} tok/s (rounds {', '.join(f'{r:.1f}' for r in rates)})"
                  + (f"; follow-ups reusing their prefix {hit[0]}/{hit[1]}" if hit else ""), file=sys.stderr, flush=True)
    print(f"\n{args.clients} clients, {args.max_tokens} tokens each, median of {args.rounds} rounds\n")
    print("| setup | tok/s | vs one process, 1 thread | follow-ups reusing their prefix |")
    print("| --- | ---: | ---: | ---: |")
    base_rate = rows[0][1]
    for name, rate, _, hit in rows:
        share = f"{hit[0]}/{hit[1]} ({100 * hit[0] / hit[1]:.0f}%)" if hit else "-"
        print(f"| {name} | {rate:.1f} | {rate / base_rate:.2f}x | {share} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
