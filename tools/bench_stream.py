"""Streaming decode speed seen by an HTTP client against the engine's own, in the same run.

    python tools/bench_stream.py [--model smollm2-135m] [--tokens 128] [--rounds 3] [--threads 0]

Starts `tensorsharp serve`, then alternates, round by round: the engine alone in this process
(tensorsharp.Model.generate), an OpenAI streaming chat and an Ollama streaming chat. Each rate is
decode only: (tokens - 1) / (time of the last token - time of the first), so prompt evaluation and
connection setup are left out. All three decode greedily with no penalties, so that the sampling
work is the same (the dialects' default sampling over Gemma's 262k vocabulary costs more per token
than the greedy engine run). Reports medians and the HTTP / engine ratios (the goal is >= 0.95), and
for Ollama also each reply's HTTP rate against the rate its server's engine reports for it.
The server is idle while the engine runs alone, and the other way round.

The client shares the machine's cores with the server, so it does as little as it can while the
stream runs: it stamps each piece the socket gives it and parses the body only at the end (a
requests + json client per line costs ~0.2 ms a token, which the engine run does not pay).

Where /proc has per-thread scheduler statistics (Linux), each HTTP round also reports what the
stream cost per token beside the engine's own threads: the server's main thread (the gevent hub,
which renders and writes every frame) in CPU time and in wake-ups, and the client's CPU time. With
as many kernel threads as cores, that work takes its CPU from the decode step, so these figures say
where the gap to the engine goes. Other load on the machine inflates them too: compare builds
within one quiet run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import requests

from tensorsharp.testing.server import timed_stream

PROMPT = "Write a long story about a lighthouse keeper and a storm."


def main_thread_use(pid: int) -> tuple[int, int] | None:
    """(CPU ns, voluntary context switches) of a process's main thread so far; None without /proc."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            cpu = int(f.read().split()[0])
        with open(f"/proc/{pid}/task/{pid}/status") as f:
            wakes = next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
    except OSError:
        return None
    return cpu, wakes


class StreamCosts:
    """timed_stream, noting per stream the server hub's CPU ns and wake-ups and the client's CPU ns
    while the body streams (the client parses it afterwards)."""

    def __init__(self, server_pid: int):
        self.pid, self.last = server_pid, None

    def __call__(self, *args, **kw):
        before, client = main_thread_use(self.pid), time.thread_time_ns()
        lines = timed_stream(*args, **kw)
        after, client = main_thread_use(self.pid), time.thread_time_ns() - client
        self.last = None if before is None or after is None else (after[0] - before[0], after[1] - before[1], client)
        return lines


def engine_rate(model, ids: list[int], n: int) -> tuple[float, int]:
    stamps = []
    for _ in model.generate(ids, n, stop_at_eog=False):
        stamps.append(time.perf_counter())
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), len(stamps)


def openai_rate(base: str, model: str, n: int, eog: list[int], stream=timed_stream) -> tuple[float, int]:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": n, "stream": True,
            "stream_options": {"include_usage": True}, "temperature": 0,   # greedy, as the engine run
            "logit_bias": {str(t): -100 for t in eog}}   # all n tokens, as the engine run makes
    stamps, used = [], None
    for t, line in stream(base, "/v1/chat/completions", body):
        if not line.startswith(b"data: {"):
            continue
        chunk = json.loads(line[6:])
        if chunk["choices"] and "content" in chunk["choices"][0]["delta"] and "role" not in chunk["choices"][0]["delta"]:
            stamps.append(t)
        used = chunk.get("usage") or used
    # A token whose text is held back (a partial character) sends no chunk: count tokens, not chunks.
    return (used["completion_tokens"] - 1) / (stamps[-1] - stamps[0]), used["completion_tokens"]


def ollama_rate(base: str, model: str, n: int, stream=timed_stream, served: list | None = None) -> tuple[float, int]:
    """served: receives the serving engine's own decode rate, from the final line's eval_count and
    eval_duration (as `tensorsharp run --verbose` counts it: the first token comes with the prompt)."""
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
            "options": {"num_predict": n, "temperature": 0, "repeat_penalty": 1}}   # as the engine run
    stamps, final = [], None
    for t, line in stream(base, "/api/chat", body):
        chunk = json.loads(line)
        if chunk["done"]:
            final = chunk
        else:
            stamps.append(t)
    if served is not None:
        served.append((final["eval_count"] - 1) / (final["eval_duration"] / 1e9))
    return (final["eval_count"] - 1) / (stamps[-1] - stamps[0]), final["eval_count"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="0", help="kernel threads, for both the server and the engine run")
    args = ap.parse_args(argv)

    import tensorsharp
    from tensorsharp.chat.template import ChatTemplate
    from tensorsharp.testing.server import running_process, serve_args

    engine = tensorsharp.Model(args.model, n_ctx=1024, n_threads=int(args.threads))
    template = ChatTemplate.for_model(engine.gguf.metadata, engine.tokenizer)
    ids = engine.tokenize_prompt(template.render([{"role": "user", "content": PROMPT}]))
    eog = sorted(engine.tokenizer.eog_ids)
    rates = {"engine": [], "openai": [], "ollama": []}
    serving: list = []   # the server engine's own rate in each Ollama round
    costs: dict = {}   # dialect: per round (hub CPU us, hub wake-ups, client CPU us) per token
    with tempfile.TemporaryDirectory() as tmp, \
            running_process(serve_args(args.model, "--ctx", "1024", "--threads", args.threads, "--parallel", "1"),
                            tmp, env={"TENSORSHARP_SPECULATIVE": "0"}) as (base, server):   # no guesses either
        # The listing holds every model of the store; the one served here is the one asked for.
        stream = StreamCosts(server.pid)
        served = next(m["name"] for m in requests.get(base + "/api/tags").json()["models"]
                      if m["name"].split(":")[0] == args.model.split(":")[0])
        openai_rate(base, served, 8, eog)   # warm up both sides
        engine_rate(engine, ids, 8)
        for r in range(args.rounds):
            for name, fn in (("engine", lambda: engine_rate(engine, ids, args.tokens)),
                             ("openai", lambda: openai_rate(base, served, args.tokens, eog, stream)),
                             ("ollama", lambda: ollama_rate(base, served, args.tokens, stream, serving))):
                stream.last = None
                rate, n = fn()
                rates[name].append(rate)
                if stream.last is not None:
                    hub, wakes, client = stream.last
                    costs.setdefault(name, []).append((hub / 1e3 / n, wakes / n, client / 1e3 / n))
                print(f"round {r + 1}  {name:<7} {n:4d} tokens  {rate:7.1f} tok/s", flush=True)
    # On a shared machine the best round is the least disturbed one; the median shows the spread.
    print(f"\ndecode tok/s over {args.rounds} rounds ({args.tokens} tokens, threads={args.threads}, model {args.model}):")
    print(f"  {'':<7} {'median':>7} {'best':>7}   ratio to the engine (median / best)")
    med = {k: statistics.median(v) for k, v in rates.items()}
    best = {k: max(v) for k, v in rates.items()}
    for k in ("engine", "openai", "ollama"):
        ratio = "" if k == "engine" else f"   {med[k] / med['engine']:.3f} / {best[k] / best['engine']:.3f}"
        print(f"  {k:<7} {med[k]:7.1f} {best[k]:7.1f}{ratio}")
    # The in-process engine and the server's differ by more than streaming on a noisy machine:
    # each round's HTTP rate against the rate the serving engine reported for that very reply.
    beside = [h / e for h, e in zip(rates["ollama"], serving)]
    print(f"  ollama ÷ its server's engine (eval_count / eval_duration), median {statistics.median(beside):.3f}")
    if costs:
        print("\nper token (medians): the server hub's CPU and wake-ups, the client's CPU")
        for k, rows in costs.items():
            hub, wakes, client = (statistics.median(col) for col in zip(*rows))
            print(f"  {k:<7} hub {hub:6.1f} us  {wakes:4.2f} wake-ups   client {client:6.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
