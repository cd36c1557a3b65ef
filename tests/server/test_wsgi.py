"""The WSGI entry under gunicorn's gevent worker, configured from the environment."""
import time

import pytest
import requests

from tensorsharp.testing.server import running, sse_events

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    env = {"TENSORSHARP_MODEL": "smollm2-135m", "TENSORSHARP_CTX": "512", "TENSORSHARP_PARALLEL": "1",
           "TENSORSHARP_API_KEY": "k"}
    args = ["-m", "gunicorn", "-k", "gevent", "-w", "1", "--no-control-socket", "-b", "127.0.0.1:{port}",
            "tensorsharp.server.wsgi:app"]
    with running(args, tmp_path_factory.mktemp("gunicorn"), env=env) as url:
        yield url


AUTH = {"Authorization": "Bearer k"}


def test_settings_come_from_the_environment(base):
    assert requests.get(base + "/api/tags").status_code == 401
    assert requests.get(base + "/api/ps", headers=AUTH).json()["models"][0]["context_length"] == 512
    assert requests.get(base + "/api/queue/status", headers=AUTH).json()["parallel"] == 1


def test_streams_and_frees_the_engine_on_disconnect(base):
    body = {"model": FILE, "messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 12, "stream": True}
    events = sse_events(requests.post(base + "/v1/chat/completions", json=body, headers=AUTH).content)
    assert events[-1] == "[DONE]" and "5" in "".join(e["choices"][0]["delta"].get("content", "")
                                                     for e in events[:-1] if e["choices"])
    r = requests.post(base + "/v1/chat/completions", headers=AUTH, stream=True,
                      json={**body, "messages": [{"role": "user", "content": "Write a long story."}],
                            "max_tokens": 400})
    lines = r.iter_lines()
    next(lines)
    t = time.perf_counter()
    assert requests.get(base + "/health").ok and time.perf_counter() - t < 0.5
    r.close()
    deadline = time.monotonic() + 5
    while requests.get(base + "/api/queue/status", headers=AUTH).json()["active"]:
        assert time.monotonic() < deadline, "the dropped stream still holds the engine"
        time.sleep(0.02)
    g = requests.post(base + "/api/generate", headers=AUTH,
                      json={"model": FILE, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}).json()
    assert g["eval_count"] == 2
