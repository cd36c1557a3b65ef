"""Replicas on a Ray cluster against one process: aggregate decode rate and session affinity.

Starts `tensorsharp serve --ray local --replicas N` (a private Ray cluster on this host) for each N
of --replicas, and the single-process server at 1 thread and at N threads for comparison. On each
it measures, with --clients concurrent streaming clients (OpenAI API, distinct prompts, greedy,
ignore_eos so each reply runs to --max-tokens), the aggregate decode rate (generated tokens / wall
time of the round, median of --rounds) and tokens per CPU second of the server's process tree
(on a shared machine the steadier of the two), and the share of follow-up turns of multi-turn
conversations whose prompt reused at least the previous turn's prompt from the KV cache, through
the OpenAI API (the whole conversation each turn, no session: the router sees only the prompt) and
the web UI's (a session).

    python tools/bench_ray.py [--model smollm2-135m] [--replicas 1,2] [--clients 4] [--max-tokens 128]
        [--rounds 3] [--conversations 16] [--turns 4]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import requests

from tensorsharp.testing.server import running_process, sse_events

TOPICS = ["the sea", "a clock", "bread", "a dragon", "rain", "the moon", "a library", "trains", "snow",
          "a garden", "bees", "a lighthouse", "copper", "owls", "a market", "glass"]


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of a process and its live descendants (Ray's services and replica
    workers are the server's descendants when it started its own cluster)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))   # ppid, utime + stime
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(p for p, (ppid, _) in stats.items() if ppid == pid and p not in tree)
    return sum(stats[p][1] for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


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


def _openai_turn(base: str, model: str, messages: list, text: str) -> tuple[int, int, str]:
    messages.append({"role": "user", "content": text})
    r = requests.post(base + "/v1/chat/completions", timeout=600, json={
        "model": model, "messages": messages, "max_tokens": 24, "temperature": 0}).json()
    reply = r["choices"][0]["message"]["content"]
    messages.append({"role": "assistant", "content": reply})
    return r["usage"]["prompt_tokens"], r["usage"]["prompt_tokens_details"]["cached_tokens"], reply


def _webui_turn(base: str, model: str, sid: str, text: str) -> tuple[int, int]:
    body = requests.post(base + "/api/chat", timeout=600, json={
        "model": model, "messages": [{"role": "user", "content": text}], "sessionId": sid, "maxTokens": 24}).text
    done = sse_events(body)[-1]
    return done["promptTokens"], done["kvReusedTokens"]


def affinity(base: str, model: str, clients: int, conversations: int, turns: int, dialect: str) -> tuple[int, int]:
    """(follow-up turns whose prompt reused at least the previous turn's prompt, follow-up turns).
    dialect "openai": the whole conversation each turn and no session; "webui": a session, which
    holds the history, and only the new turn."""
    hits, total, lock = 0, 0, threading.Lock()

    def conversation(k: int) -> None:
        nonlocal hits, total
        messages, previous = [], None
        sid = requests.post(base + "/api/sessions").json()["sessionId"] if dialect == "webui" else None
        for t in range(turns):
            text = f"Conversation {k}, question {t}: tell me one fact about {TOPICS[(k + t) % len(TOPICS)]}."
            if dialect == "webui":
                prompt, cached = _webui_turn(base, model, sid, text)
            else:
                prompt, cached, _ = _openai_turn(base, model, messages, text)
            if previous is not None:
                with lock:
                    total += 1
                    hits += cached >= previous
            previous = prompt

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
    setups = [("one process, 1 thread", common)]
    for n in counts:
        if n > 1:
            setups.append((f"one process, {n} threads, parallel {n * args.parallel}",
                           [*common[:-4], "--threads", str(n), "--parallel", str(n * args.parallel)]))
        setups.append((f"ray, {n} replica{'s' * (n > 1)} x 1 thread",
                       [*common, "--ray", "local", "--replicas", str(n)]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd in setups:
            with running_process(cmd, tmp, timeout=300) as (base, proc):
                decode_rate(base, args.model, args.clients, 8, -1)   # warm-up
                rates, per_cpu = [], []
                for r in range(args.rounds):
                    cpu = tree_cpu_seconds(proc.pid)
                    rate = decode_rate(base, args.model, args.clients, args.max_tokens, r)
                    rates.append(rate)
                    per_cpu.append(args.clients * args.max_tokens / (tree_cpu_seconds(proc.pid) - cpu))
                hits = [affinity(base, args.model, args.clients, args.conversations, args.turns, d)
                        for d in ("openai", "webui")]
            rows.append((name, statistics.median(rates), statistics.median(per_cpu), hits))
            print(f"{name}: {statistics.median(rates):.1f} tok/s (rounds {', '.join(f'{r:.1f}' for r in rates)}), "
                  f"{statistics.median(per_cpu):.1f} tokens per CPU second; "
                  f"follow-ups reusing their prefix: OpenAI {hits[0][0]}/{hits[0][1]}, "
                  f"web UI {hits[1][0]}/{hits[1][1]}",
                  file=sys.stderr, flush=True)
    print(f"\n{args.clients} clients, {args.max_tokens} tokens each, median of {args.rounds} rounds\n")
    print("| setup | tok/s | vs one process, 1 thread | tokens per CPU second | follow-ups reusing their "
          "prefix: OpenAI | web UI |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    base_rate = rows[0][1]
    for name, rate, per_cpu, hits in rows:
        shares = " | ".join(f"{h}/{n} ({100 * h / n:.0f}%)" for h, n in hits)
        print(f"| {name} | {rate:.1f} | {rate / base_rate:.2f}x | {per_cpu:.1f} | {shares} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
