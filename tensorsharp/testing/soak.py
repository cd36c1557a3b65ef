"""A soak of a live server: clients in threads send a mix of dialects (OpenAI chat streamed and
not, structured output, Ollama chat and generate, the web UI's SSE), a share of them dropping the
connection mid-stream; the server's RSS is sampled throughout. Errors are any status or stream
that is not a well-formed success, and any stream that stalls.

    python -m tensorsharp.testing.soak [--minutes 30] [--clients 8] [--drop 0.2] [--model smollm2-135m]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from tensorsharp.testing.server import running_process, serve_args

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
TOPICS = ["the sea", "a clock", "bread", "a dragon", "rain", "the moon", "a library", "trains"]


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _requests(model: str, r: random.Random) -> tuple[str, str, dict, bool]:
    """(kind, path, body, streamed) of one random request."""
    topic = r.choice(TOPICS)
    n = r.randint(8, 48)
    kind = r.choice(["openai-stream", "openai", "structured", "ollama-chat", "ollama-generate", "webui"])
    chat = [{"role": "user", "content": f"Tell me about {topic}."}]
    if kind == "openai-stream":
        return kind, "/v1/chat/completions", {"model": model, "messages": chat, "max_tokens": n, "stream": True}, True
    if kind == "openai":
        return kind, "/v1/chat/completions", {"model": model, "messages": chat, "max_tokens": n,
                                              "temperature": 0.7, "seed": r.randrange(1000)}, False
    if kind == "structured":
        return kind, "/v1/chat/completions", {
            "model": model, "max_tokens": 60, "messages": [{"role": "user", "content": f"A person who loves {topic}."}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}}, False
    if kind == "ollama-chat":
        return kind, "/api/chat", {"model": model, "messages": chat, "options": {"num_predict": n}}, True
    if kind == "ollama-generate":
        return kind, "/api/generate", {"model": model, "prompt": f"Once upon a time, {topic}",
                                       "options": {"num_predict": n}, "stream": False}, False
    return kind, "/api/chat", {"messages": chat, "maxTokens": n}, True


def _ok_stream(kind: str, lines: list[bytes]) -> bool:
    """Whether a whole stream ended as a success should."""
    text = [line.decode() for line in lines if line.strip()]
    if not text:
        return False
    if kind == "openai-stream":
        return text[-1] == "data: [DONE]" and not any('"error"' in t for t in text)
    if kind == "ollama-chat":
        last = json.loads(text[-1])
        return last.get("done") is True and "error" not in last
    return any('"done"' in t for t in text[-3:]) and not any('"error"' in t for t in text)


def _client(base: str, model: str, seed: int, until: float, drop: float, stats: Counter, errors: list,
            lock: threading.Lock) -> None:
    r = random.Random(seed)
    session = requests.Session()
    while time.monotonic() < until:
        kind, path, body, streamed = _requests(model, r)
        dropping = streamed and r.random() < drop
        try:
            resp = session.post(base + path, json=body, stream=streamed, timeout=120)
            if resp.status_code == 503:          # overload is an answer, not an error
                outcome = "busy"
                time.sleep(float(resp.headers.get("Retry-After", "1")))
            elif resp.status_code != 200:
                outcome = f"status {resp.status_code}: {resp.text[:200]}"
            elif dropping:
                it = resp.iter_lines()
                for _ in range(r.randint(1, 3)):
                    next(it, None)
                resp.close()
                session = requests.Session()     # the dropped connection is gone
                outcome = "dropped"
            elif streamed:
                outcome = "ok" if _ok_stream(kind, list(resp.iter_lines())) else "bad stream"
            else:
                data = resp.json()
                if kind == "structured":
                    json.loads(data["choices"][0]["message"]["content"])
                outcome = "ok"
        except Exception as e:  # a stalled or broken exchange is a finding
            outcome = f"{type(e).__name__}: {e}"
        with lock:
            stats[outcome if outcome in ("ok", "busy", "dropped") else "error"] += 1
            if outcome not in ("ok", "busy", "dropped"):
                errors.append(f"{kind}: {outcome}")


def soak(base: str, pid: int, seconds: float, clients: int = 8, drop: float = 0.2,
         model: str = "SmolLM2-135M-Instruct.Q4_1.gguf", sample_every: float = 5.0) -> dict:
    """Runs the soak against a server at base (process pid); returns counts, errors and RSS samples."""
    stats, errors, lock = Counter(), [], threading.Lock()
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=_client, args=(base, model, i, until, drop, stats, errors, lock), daemon=True)
               for i in range(clients)]
    for t in threads:
        t.start()
    rss = []
    t0 = time.monotonic()
    while any(t.is_alive() for t in threads):
        rss.append((round(time.monotonic() - t0, 1), _rss_kb(pid)))
        time.sleep(sample_every)
    for t in threads:
        t.join()
    time.sleep(1.0)
    status = requests.get(base + "/api/queue/status", timeout=5).json()
    health = requests.get(base + "/health", timeout=5).status_code
    half = [kb for at, kb in rss if at >= seconds / 2] or [rss[-1][1]]
    growth = (half[-1] - half[0]) / half[0] if half[0] else 0.0
    return {"counts": dict(stats), "errors": errors[:20], "n_errors": stats["error"], "rss_kb": rss,
            "rss_growth_last_half": growth, "idle_after": status.get("active") == 0 and status.get("pending") == 0,
            "health_after": health}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--drop", type=float, default=0.2)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--parallel", default="4")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        with running_process(serve_args(args.model, "--ctx", "2048", "--parallel", args.parallel),
                             Path(tmp)) as (base, proc):
            out = soak(base, proc.pid, args.minutes * 60, args.clients, args.drop)
    samples = out.pop("rss_kb")
    out["rss_mb_first_last_max"] = [round(samples[0][1] / 1024, 1), round(samples[-1][1] / 1024, 1),
                                    round(max(kb for _, kb in samples) / 1024, 1)]
    print(json.dumps(out, indent=1))
    return 0 if out["n_errors"] == 0 and out["idle_after"] else 1


if __name__ == "__main__":
    sys.exit(main())
