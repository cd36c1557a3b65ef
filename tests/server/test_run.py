"""`tensorsharp serve` as a process: Ctrl-C stops it quietly, and its log says why a request failed."""
import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tensorsharp.testing.server import free_port

ACCESS = re.compile(r'^127\.0\.0\.1 - - \[[^]]+\] "(?P<request>[^"]*)" (?P<status>\d{3}) \S+ \S+(?P<reason>.*)$')


def _status(url: str, data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(url, data=data, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def test_ctrl_c_stops_quietly_and_the_log_says_why_a_request_failed(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "tensorsharp", "serve", "--model", "smollm2-135m", "--port",
                             str(port), "--ctx", "256", "--threads", "1"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _status(base + "/health") != 200:
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        assert _status(base + "/api/show", json.dumps({"model": "nope"}).encode()) == 404
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and out == ""
    first, *access = err.splitlines()
    assert first.startswith(f"tensorsharp: serving smollm2-135m:latest on {base} ")
    stopping = [line for line in access if line.startswith("tensorsharp: stopping;")]
    assert len(stopping) == 1   # the one line that says the drain began
    lines = [ACCESS.match(line) for line in access if line not in stopping]
    assert all(lines), err   # nothing but access lines: no traceback, no stray timestamp
    (failed,) = [m for m in lines if m["status"] != "200"]
    assert failed["request"] == "POST /api/show HTTP/1.1" and failed["status"] == "404"
    assert failed["reason"].startswith(" model 'nope' not found; models here: ") and "smollm2-135m:latest" in failed["reason"]


SERVE_BIG = """
from gevent.pywsgi import WSGIServer
from tensorsharp.server.run import _Handler

BODY = bytes(range(256)) * (64 * 1024)   # 16 MB, far more than a socket's send buffer

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [BODY]

server = WSGIServer(("127.0.0.1", 0), app, handler_class=_Handler, log=None)
server.connections, server.max_connections, server.responses, server.io_timeout = 0, 8, 0, 30.0
server.start()
print(server.server_port, flush=True)
server.serve_forever()
"""


@contextlib.contextmanager
def _server(tmp_path, script: str):
    """A server from script, run outside the checkout: (its process, its port)."""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        yield proc, int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()


def _exchange(port: int, request: bytes, pause: float = 0.0) -> tuple[bytes, bytes]:
    """Sends request, waits pause seconds, reads until the server closes: (head, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        time.sleep(pause)
        data = bytearray()
        while chunk := s.recv(1 << 20):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return head, body


def test_a_write_larger_than_one_send_arrives_whole(tmp_path):
    # The handler sends each write once and leaves what the kernel did not take to sendall: a
    # client that reads late makes the first send partial.
    with _server(tmp_path, SERVE_BIG) as (_, port):
        head, body = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", pause=0.5)
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 16777216" in head
    assert body == bytes(range(256)) * (64 * 1024)


SERVE_STREAM = """
import sys
from flask import Flask
from gevent.pywsgi import WSGIServer
from tensorsharp.server.run import _Handler
from tensorsharp.server.streaming import ndjson_response

app = Flask(__name__)

@app.post("/s")
def s():
    return ndjson_response(iter(["a", "", "\\u00e9" * 10, "x" * 300]), on_close=lambda: print("closed", flush=True))

server = WSGIServer(("127.0.0.1", 0), app, handler_class=_Handler, log=None)
server.connections, server.max_connections, server.responses, server.io_timeout = 0, 8, 0, 30.0
server.start()
print(server.server_port, flush=True)
server.serve_forever()
"""


def test_a_stream_goes_out_in_chunked_encoding_one_chunk_per_frame(tmp_path):
    # Each frame is its own chunk, sized in hex bytes (not characters); an empty frame sends
    # nothing (an empty chunk would end the body early); a zero chunk ends the body.
    with _server(tmp_path, SERVE_STREAM) as (proc, port):
        head, body = _exchange(port, b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        assert proc.stdout.readline() == "closed\n"
    assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head
    assert body == (b"1\r\na\r\n" + b"14\r\n" + "\u00e9".encode() * 10 + b"\r\n"
                    + b"12c\r\n" + b"x" * 300 + b"\r\n" + b"0\r\n\r\n")
