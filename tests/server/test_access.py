"""API key, the bounded queue (503 + Retry-After) and a dropped stream freeing the engine."""
import time

import pytest

from tensorsharp.server.app import create_app

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LONG = {"model": FILE, "messages": [{"role": "user", "content": "Write a very long story."}],
        "max_tokens": 400, "stream": True}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """One request at a time, no waiting room, and a key."""
    app = create_app("smollm2-135m", n_ctx=512, n_threads=1, parallel=1, cache_slots=0, max_queue=0,
                     api_key="s3cret", upload_dir=tmp_path_factory.mktemp("uploads"))
    yield app.test_client()
    app.extensions["tensorsharp"].served.close()


AUTH = {"Authorization": "Bearer s3cret"}


def test_health_needs_no_key(keyed):
    assert keyed.get("/health").status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}])
def test_missing_or_wrong_key_is_401_in_each_dialect(keyed, headers):
    r = keyed.get("/v1/models", headers=headers)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_api_key"
    r = keyed.get("/api/tags", headers=headers)
    assert r.status_code == 401 and "API key" in r.get_json()["error"]
    assert keyed.post("/api/sessions", headers=headers).status_code == 401


def test_right_key_passes(keyed):
    assert keyed.get("/v1/models", headers=AUTH).status_code == 200
    assert keyed.get("/api/tags", headers={"Authorization": "bearer s3cret"}).status_code == 200


def test_full_queue_is_503_with_retry_after_and_a_dropped_stream_frees_the_engine(keyed):
    busy = keyed.post("/v1/chat/completions", json=LONG, headers=AUTH, buffered=False)
    assert busy.status_code == 200
    chunks = busy.response   # read a little, like a client that then goes away
    next(chunks)
    status = keyed.get("/api/queue/status", headers=AUTH).get_json()
    assert (status["active"], status["busy"], status["pending_requests"]) == (1, True, 0)
    r = keyed.post("/v1/chat/completions", json={**LONG, "stream": False}, headers=AUTH)
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
    assert r.get_json()["error"]["code"] == "queue_full"
    r = keyed.post("/api/generate", json={"model": FILE, "prompt": "hi"}, headers=AUTH)
    assert r.status_code == 503 and "busy" in r.get_json()["error"]
    busy.close()   # the WSGI server closes the body iterator when the client is gone
    deadline = time.monotonic() + 5
    while keyed.get("/api/queue/status", headers=AUTH).get_json()["active"]:   # ends within a token
        assert time.monotonic() < deadline, "the dropped request still holds the engine"
        time.sleep(0.01)
    ok = keyed.post("/api/generate", json={"model": FILE, "prompt": "hi", "stream": False,
                                           "options": {"num_predict": 2}}, headers=AUTH)
    assert ok.status_code == 200 and ok.get_json()["eval_count"] == 2


def test_a_client_gone_before_the_first_byte_frees_the_engine(keyed):
    r = keyed.post("/api/chat", json={"model": FILE, "messages": LONG["messages"], "options": {"num_predict": 400}},
                   headers=AUTH, buffered=False)
    assert r.status_code == 200 and keyed.get("/api/queue/status", headers=AUTH).get_json()["active"] == 1
    r.close()   # the body was never read
    deadline = time.monotonic() + 5
    while keyed.get("/api/queue/status", headers=AUTH).get_json()["active"]:
        assert time.monotonic() < deadline, "the abandoned request still holds the engine"
        time.sleep(0.01)
