"""`tensorsharp serve` as a process: Ctrl-C stops it quietly, and its log says why a request failed."""
import json
import re
import signal
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
