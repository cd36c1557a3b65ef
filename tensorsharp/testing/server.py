"""A live server for tests and tools: start `tensorsharp serve` (or another command) on a free port,
wait until it is healthy, stop it; and parse the SSE and NDJSON bodies it streams."""
from __future__ import annotations

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
