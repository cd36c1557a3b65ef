"""Runs every curl example of the API documents verbatim against a server and checks each answer's shape.

    python tools/api_examples.py                       # starts `tensorsharp serve` on a free port
    python tools/api_examples.py --base http://127.0.0.1:5000

Only the host/port (localhost:5000 / localhost:9112) and the model names are substituted: the
model becomes the served file's name. The image examples need photo.png, made with Pillow when it
is installed (else they are skipped). Prints one row per example and exits 1 if any shape is wrong.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import jsonschema

# The API documents live in ../shared beside the checkout.
SEED_DIR = Path(__file__).resolve().parents[2] / "shared" / "seeds"
SEEDS = [SEED_DIR / "002_cc8d7dbc79ec35b4.txt", SEED_DIR / "000_c359f6af5faa5fbd.txt"]
HOSTS = re.compile(r"localhost:(5000|9112)")
MODELS = ("Qwen3-4B-Q8_0.gguf", "gemma-4-E4B-it-Q8_0.gguf", "Meta-Llama-3-8B-Instruct")


def _complete(text: str) -> bool:
    if text.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(text)
    except ValueError:   # an open quote: the JSON body goes on
        return False
    return True


def extract(path: Path) -> list[str]:
    """The shell commands of a document: curl commands with their continuation lines, each with
    the variable assignment (IMG_B64=...) that precedes it."""
    examples, block, prefix = [], None, []
    for line in path.read_text().splitlines():
        s = line.strip()
        if block is None:
            if s.startswith("IMG_B64="):
                prefix.append(s)
            elif s.startswith("curl "):
                block = [s]
        else:
            block.append(line)
        if block is not None and _complete("\n".join(block)):
            examples.append("\n".join(prefix + block))
            block, prefix = None, []
    return examples


def run(command: str, host: str, model: str, workdir: Path) -> str:
    command = HOSTS.sub(host, command)
    for name in MODELS:
        command = command.replace(name, model)
    done = subprocess.run(["bash", "-c", command], cwd=workdir, capture_output=True, text=True, timeout=300)
    return done.stdout


# -- shape checks: (what the document shows, predicate over the parsed output) ---------------------

def _json(out: str):
    return json.loads(out)


def _lines(out: str) -> list:
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def _sse(out: str) -> list:
    return [x[len("data:"):].strip() for x in out.splitlines() if x.startswith("data:")]


def _sent_body(command: str) -> dict | None:
    """The JSON body a curl example sends with -d '...' (None when it has none or it is not JSON)."""
    m = re.search(r"-d '(\{.*\})'", command, re.S)
    try:
        return json.loads(m.group(1)) if m else None
    except ValueError:
        return None


def _keys(obj: dict, *keys) -> bool:
    return all(k in obj for k in keys)


CACHE = ("prompt_cache_hit_tokens", "prompt_cache_hit_ratio")
TIMING = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration")


def check(command: str, out: str, vision: bool) -> tuple[bool, str]:
    url = re.search(r"localhost:\d+(/[\w/.\-]+)", command).group(1)
    stream = '"stream": true' in command or "stream\": true" in command
    image = "IMG_B64" in command
    try:
        if image and not vision:
            e = _json(out)["error"]
            msg = e["message"] if isinstance(e, dict) else e
            return "does not support images" in msg, f"400 text-only model: {msg[:40]}"
        if url == "/api/tags":
            m = _json(out)["models"][0]
            return _keys(m, "name", "model", "size", "details"), f"models[0].name={m['name']}"
        if url == "/api/show":
            b = _json(out)
            return _keys(b, "details", "model_info", "template", "parameters", "capabilities"), "details+model_info"
        if url == "/api/generate" and stream:
            lines = _lines(out)
            last = lines[-1]
            ok = all("response" in x and "done" in x for x in lines) and last["done"] and _keys(last, *TIMING, *CACHE)
            return ok, f"{len(lines)} NDJSON lines, final done_reason={last.get('done_reason')}"
        if url == "/api/generate":
            b = _json(out)
            ok = _keys(b, "model", "response", "done", "done_reason", "prompt_eval_count", "eval_count", *CACHE)
            return ok and b["prompt_cache_hit_tokens"] == 0, f"response={b['response'][:30]!r}"
        if url == "/api/chat/ollama":
            b = _json(out)
            ok = b["message"]["role"] == "assistant" and _keys(b, "done", "done_reason", *CACHE)
            return ok, f"message.content={b['message']['content'][:30]!r}"
        if url == "/v1/chat/completions" and stream:
            events = _sse(out)
            chunks = [json.loads(e) for e in events[:-1]]
            ok = events[-1] == "[DONE]" and len({c["id"] for c in chunks}) == 1 and \
                all(c["object"] == "chat.completion.chunk" for c in chunks) and \
                chunks[0]["choices"][0]["delta"].get("role") == "assistant"
            return ok, f"{len(chunks)} chunks + [DONE]"
        if url == "/v1/chat/completions":
            b = _json(out)
            if "error" in b:
                return False, f"error: {b['error']['message'][:60]}"
            c = b["choices"][0]
            ok = b["object"] == "chat.completion" and c["message"]["role"] == "assistant" and \
                "cached_tokens" in b["usage"]["prompt_tokens_details"] and c["finish_reason"] in ("stop", "length", "tool_calls")
            note = f"finish_reason={c['finish_reason']}"
            calls = c["message"].get("tool_calls")
            if calls:
                fn = calls[0]["function"]
                ok = ok and c["finish_reason"] == "tool_calls" and isinstance(json.loads(fn["arguments"]), dict)
                note += f" tool_calls[0]={fn['name']}({fn['arguments']})"
            elif '"tools"' in command:
                note += " (the model answered in text rather than calling the tool)"
            sent = _sent_body(command)
            if sent and sent.get("response_format", {}).get("type") == "json_schema":
                schema = sent["response_format"]["json_schema"]["schema"]
                value = json.loads(c["message"]["content"])
                jsonschema.validate(value, schema)   # raises: the example fails loudly
                note += f" content validates: {c['message']['content'][:60]}"
            return ok, note
        if url == "/api/sessions":
            return "sessionId" in _json(out), "sessionId"
        if url.startswith("/api/sessions/"):
            b = _json(out)
            return b == {"deleted": True} or "unknown session" in b.get("error", ""), \
                f"{b} (the document's id is a placeholder)"
        if url == "/api/chat":
            frames = [json.loads(e) for e in _sse(out)]
            ok = "sessionId" in frames[0] and frames[-1].get("done") and \
                _keys(frames[-1], "tokenCount", "elapsed", "tokPerSec", "promptTokens", "kvReusedTokens", "kvReusePercent")
            return ok, f"{len(frames)} frames, done tokenCount={frames[-1].get('tokenCount')}"
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        return False, f"unexpected output ({type(e).__name__}: {e}): {out[:80]!r}"
    return False, "no check for this endpoint"


def make_photo(workdir: Path) -> bool:
    try:
        from PIL import Image
    except ImportError:
        return False
    img = Image.new("RGB", (32, 32))
    for x in range(32):
        for y in range(32):
            img.putpixel((x, y), (8 * x, 8 * y, 128))
    img.save(workdir / "photo.png")
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", help="URL of a running server (default: start `tensorsharp serve` on a free port)")
    ap.add_argument("--model", default="smollm2-135m", help="model to serve when starting one")
    ap.add_argument("--ctx", default="1024", help="context of the started server: bounds the examples that "
                    "set no token limit (OpenAI's default is the rest of the context)")
    ap.add_argument("--threads", default="1", help="kernel threads of the started server")
    ap.add_argument("--seed", action="append", type=Path, help="API documents to run (default: the two seeds)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.base:
            return report(args.base, args.seed or SEEDS, workdir)
        from tensorsharp.testing.server import running, serve_args
        with running(serve_args(args.model, "--ctx", args.ctx, "--threads", args.threads), workdir) as base:
            return report(base, args.seed or SEEDS, workdir)


def report(base: str, seeds: list[Path], workdir: Path) -> int:
    host = base.split("://", 1)[1].rstrip("/")
    with urllib.request.urlopen(base + "/api/tags") as r:
        model = json.load(r)["models"][0]["name"]
    with urllib.request.urlopen(base + "/api/models") as r:
        vision = json.load(r)["models"][0]["supportsImages"]
    photo = make_photo(workdir)
    if not photo:
        print("Pillow is not installed: the image examples are skipped", file=sys.stderr)
    rows, failed = [], 0
    for seed in seeds:
        for i, command in enumerate(extract(seed), start=1):
            label = f"{seed.name[:3]}#{i}"
            endpoint = re.search(r"localhost:\d+(/[\w/.\-]+)", command).group(1)
            if "IMG_B64" in command and not photo:
                rows.append((label, endpoint, "SKIP", "no photo.png"))
                continue
            out = run(command, host, model, workdir)
            ok, note = check(command, out, vision)
            failed += not ok
            rows.append((label, endpoint + (" (stream)" if '"stream": true' in command else ""), "ok" if ok else "FAIL", note))
    w = [max(len(r[k]) for r in rows) for k in range(3)]
    print(f"{'example':<{w[0]}}  {'endpoint':<{w[1]}}  {'shape':<{w[2]}}  note")
    for r in rows:
        print(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")
    print(f"\n{len(rows) - failed} of {len(rows)} examples gave the documented shape (server {base}, model {model})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
