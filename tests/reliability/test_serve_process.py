"""The server process under stress (issue 18, items 8 and 10): SIGTERM ends open streams cleanly
within the drain bound, idle and half-sent connections time out, connections past the cap get a
clear 503, and a reader that never reads does not hold up others."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from tensorsharp.testing.server import free_port, serve_args

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def start(tmp_path, env: dict, *extra: str):
    port = free_port()
    args = [a.format(port=port) for a in serve_args("smollm2-135m", "--ctx", "1024", "--parallel", "2", *extra)]
    log = open(tmp_path / f"server-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "TENSORSHARP_THREADS": "1", **env})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(base + "/health", timeout=1).status_code == 200:
                return proc, base, port
        except requests.RequestException:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / f"server-{port}.log").read_text()
        time.sleep(0.2)


def stop(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture
def drain2(tmp_path):
    proc, base, port = start(tmp_path, {"TENSORSHARP_DRAIN_SECONDS": "2"})
    yield proc, base, port
    stop(proc)


def test_sigterm_ends_open_streams_cleanly_in_each_dialect(drain2):
    proc, base, _ = drain2
    openai = requests.post(base + "/v1/chat/completions", stream=True, timeout=60, json={
        "model": FILE, "stream": True, "max_tokens": 900,
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]})
    ollama = requests.post(base + "/api/generate", stream=True, timeout=60, json={
        "model": FILE, "prompt": "Count to a thousand: 1, 2, 3,", "raw": True, "options": {"num_predict": 900}})
    o_lines, l_lines = openai.iter_lines(), ollama.iter_lines()
    next(o_lines), next(l_lines)     # both are streaming
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest_openai = [line for line in o_lines if line]       # a cut body would raise ChunkedEncodingError
    rest_ollama = [json.loads(line) for line in l_lines if line]
    assert proc.wait(timeout=15) == 0
    took = time.monotonic() - t0
    assert took < 2 + 6, took
    events = [line.decode().removeprefix("data: ") for line in rest_openai]
    assert events[-1] == "[DONE]" or "shutting down" in events[-1], events[-3:]
    assert any("shutting down" in e for e in events[-2:]), events[-3:]
    assert "shutting down" in rest_ollama[-1].get("error", ""), rest_ollama[-1]


def test_requests_finishing_within_the_drain_complete_normally(drain2):
    proc, base, _ = drain2
    r = requests.post(base + "/api/generate", stream=True, timeout=60, json={
        "model": FILE, "prompt": "Hi", "options": {"num_predict": 8}})
    lines = r.iter_lines()
    next(lines)
    proc.send_signal(signal.SIGTERM)
    rest = [json.loads(line) for line in lines if line]
    assert rest[-1]["done"] and rest[-1]["done_reason"] == "length" and "error" not in rest[-1]
    assert proc.wait(timeout=15) == 0


@pytest.fixture
def tight(tmp_path):
    proc, base, port = start(tmp_path, {"TENSORSHARP_IO_TIMEOUT": "2", "TENSORSHARP_MAX_CONNECTIONS": "8",
                                       "TENSORSHARP_MAX_BODY": "4096"})
    yield proc, base, port
    stop(proc)


def test_idle_and_half_sent_connections_time_out_and_the_cap_refuses_clearly(tight):
    proc, base, port = tight
    held = []
    for i in range(8):   # fill every place: idle ones, and one slowloris sending half its headers
        s = socket.create_connection(("127.0.0.1", port))
        if i == 0:
            s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Le")
        held.append(s)
    time.sleep(0.5)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = extra.recv(4096)
    assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer
    time.sleep(3)   # past the 2 s timeout: the held connections were closed by the server
    for s in held:
        s.settimeout(1)
        data = s.recv(4096)   # closed, the half-sent request with a 4xx first
        assert data == b"" or data.startswith(b"HTTP/1.1 4") and s.recv(4096) == b"", data
        s.close()
    assert requests.get(base + "/health", timeout=2).status_code == 200


def test_a_reader_that_never_reads_does_not_hold_up_others(tight):
    proc, base, port = tight
    stuck = socket.create_connection(("127.0.0.1", port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = json.dumps({"model": FILE, "prompt": "Count to a thousand: 1, 2, 3,", "raw": True,
                       "options": {"num_predict": 400}}).encode()
    stuck.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
    t0 = time.monotonic()
    r = requests.post(base + "/api/generate", timeout=60, json={"model": FILE, "prompt": "Hi", "stream": False,
                                                                "options": {"num_predict": 4}})
    assert r.status_code == 200 and r.json()["eval_count"] == 4 and time.monotonic() - t0 < 30
    stuck.close()


def test_a_chunked_body_over_the_limit_is_413_not_cut(tight):
    proc, base, port = tight
    body = json.dumps({"model": FILE, "prompt": "Hi " + "x" * 9000, "stream": False}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        for i in range(0, len(body), 1000):
            chunk = body[i:i + 1000]
            s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"larger than the limit of 4096 bytes" in answer
