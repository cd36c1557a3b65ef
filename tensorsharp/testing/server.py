"""A live server for tests and tools: start `tensorsharp serve` (or another command) on a free port,
wait until it is healthy, stop it; and parse the SSE and NDJSON bodies it streams."""
from __future__ import annotations

import bisect
import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sse_events(data: bytes | str) -> list:
    """The JSON payloads of an SSE body, in order ("[DONE]" kept as the string)."""
    text = data.decode() if isinstance(data, bytes) else data
    out = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data:"):
                payload = line[len("data:"):].strip()
                out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def ndjson_lines(data: bytes | str) -> list:
    text = data.decode() if isinstance(data, bytes) else data
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def timed_stream(base: str, path: str, body: dict, timeout: float = 600) -> list[tuple[float, bytes]]:
    """POSTs body as JSON and returns the chunked response's lines (SSE or NDJSON), each with the
    time.perf_counter() at which its last byte arrived. For benchmarks: while the stream lasts
    only recv and a time stamp run, so the client takes little of the cores the server uses."""
    host, port = base.split("//")[1].split(":")
    payload = json.dumps(body).encode()
    pieces = []
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
        while True:
            data = sock.recv(1 << 16)
            if not data:
                break
            pieces.append((time.perf_counter(), data))
    raw = b"".join(d for _, d in pieces)
    arrived = list(itertools.accumulate(len(d) for _, d in pieces))   # raw bytes received by each recv
    head, _, rest = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace"))
    at = len(head) + 4
    content = bytearray()
    spans = []   # (content bytes so far, raw bytes so far) at the end of each piece of the content
    if b"transfer-encoding: chunked" not in head.lower():
        content += rest
        spans = [(n - at, n) for n in arrived if n > at]
    else:
        while True:   # each chunk: its size in hex, CRLF, its data, CRLF
            eol = raw.index(b"\r\n", at)
            size = int(raw[at:eol], 16)
            if size == 0:
                break
            content += raw[eol + 2:eol + 2 + size]
            spans.append((len(content), eol + 2 + size))
            at = eol + 2 + size + 2
    body_ends = [b for b, _ in spans]
    lines, start = [], 0
    for line in bytes(content).split(b"\n"):
        start += len(line) + 1   # past the line's newline
        if line.strip():
            raw_end = spans[min(bisect.bisect_left(body_ends, start), len(spans) - 1)][1]
            lines.append((pieces[bisect.bisect_left(arrived, raw_end)][0], line))
    return lines


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/health", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def running(args: list[str], workdir: Path, env: dict | None = None, timeout: float = 120) -> Iterator[str]:
    """Runs `python <args>` ("{port}" in args becomes a free port) from workdir, so the installed
    package is imported rather than a source tree; yields the base URL once /health answers."""
    with running_process(args, workdir, env, timeout) as (base, _):
        yield base


@contextmanager
def running_process(args: list[str], workdir: Path, env: dict | None = None, timeout: float = 120,
                    executable: str = sys.executable) -> Iterator[tuple[str, subprocess.Popen]]:
    """running(), yielding the server process beside its base URL; executable runs args (another
    server, such as llama-server, instead of this Python)."""
    port = free_port()
    workdir = Path(workdir)
    log = workdir / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([executable, *[a.format(port=port) for a in args]], cwd=workdir,
                                env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(base):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not come up in {timeout}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_args(model: str, *extra: str) -> list[str]:
    """Arguments for running() that start `tensorsharp serve` on the chosen port."""
    return ["-m", "tensorsharp", "serve", "--model", model, "--port", "{port}", *extra]
