"""Overload (issue 18): with every engine place and queue place taken, each dialect gets a 503 with
Retry-After and an error body of its own shape, and serving resumes once the load is gone."""
import time

import pytest

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LONG = {"model": FILE, "messages": [{"role": "user", "content": "Write a very long story."}],
        "max_tokens": 400, "stream": True}
ROUTES = {
    "openai": ("/v1/chat/completions", {"model": FILE, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}),
    "openai-completions": ("/v1/completions", {"model": FILE, "prompt": "Hi", "max_tokens": 2}),
    "ollama-chat": ("/api/chat", {"model": FILE, "messages": [{"role": "user", "content": "Hi"}], "stream": False}),
    "ollama-generate": ("/api/generate", {"model": FILE, "prompt": "Hi", "stream": False}),
    "webui": ("/api/chat", {"messages": [{"role": "user", "content": "Hi"}], "maxTokens": 2}),
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tensorsharp.server.app import create_app
    app = create_app("smollm2-135m", n_ctx=512, n_threads=1, parallel=1, cache_slots=0, max_queue=0,
                     upload_dir=tmp_path_factory.mktemp("uploads"))
    yield app
    app.extensions["tensorsharp"].served.close()


def test_a_full_server_answers_503_with_retry_after_in_each_dialect(app):
    client = app.test_client()
    busy = client.post("/v1/chat/completions", json=LONG, buffered=False)
    chunks = busy.response
    next(chunks)
    for name, (route, body) in ROUTES.items():
        r = client.post(route, json=body)
        assert r.status_code == 503, (name, r.data[:200])
        assert int(r.headers["Retry-After"]) > 0
        err = r.get_json()["error"]
        if route.startswith("/v1/"):
            assert err["type"] == "server_error" and err["code"] == "queue_full"
        else:
            assert isinstance(err, str) and "busy" in err
    busy.close()   # the client goes away: its place frees within a step or two
    deadline = time.monotonic() + 10
    while client.get("/api/queue/status").get_json()["active"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    r = client.post("/api/generate", json={"model": FILE, "prompt": "Hi", "stream": False,
                                           "options": {"num_predict": 2}})
    assert r.status_code == 200
