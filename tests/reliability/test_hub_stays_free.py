"""Nothing heavy on the gevent hub (issue 18, items 5 and 9): a chat template that loops and a
30 MB prompt are refused while /health, served by the same hub, keeps answering fast."""
import json
import statistics
import time

import gevent
import pytest

from tensorsharp.chat.template import ChatTemplate

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOOPING = ("{% set ns = namespace(n=0) %}{% for i in range(100000) %}{% for j in range(100000) %}"
           "{% for m in messages %}{% set ns.n = ns.n + m.content|length %}{% endfor %}{% endfor %}{% endfor %}"
           "{{ ns.n }}")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tensorsharp.server.app import create_app
    app = create_app("smollm2-135m", n_ctx=512, n_threads=1, parallel=1, cache_slots=0,
                     max_body=64 << 20, upload_dir=tmp_path_factory.mktemp("uploads"))
    yield app
    app.extensions["tensorsharp"].served.close()


def health_latencies(client, busy: gevent.Greenlet) -> list[float]:
    """Times of /health requests made while `busy` runs (at least a few)."""
    took = []
    while not busy.ready() or len(took) < 3:
        t = time.monotonic()
        assert client.get("/health").status_code == 200
        took.append(time.monotonic() - t)
        gevent.sleep(0.02)
    return took


def test_a_looping_template_is_stopped_and_health_stays_fast(app):
    served = app.extensions["tensorsharp"].served
    client = app.test_client()
    original = served.template
    served.template = ChatTemplate(LOOPING)
    try:
        t0 = time.monotonic()
        busy = gevent.spawn(client.post, "/v1/chat/completions",
                            json={"model": FILE, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
        gevent.sleep(0)
        took = health_latencies(client, busy)
        r = busy.get()
        elapsed = time.monotonic() - t0
    finally:
        served.template = original
    assert r.status_code == 500
    message = r.get_json()["error"]["message"]
    assert "chat template of smollm2-135m:latest was stopped" in message and "longer than 2 s" in message
    assert elapsed < 10
    assert len(took) >= 10 and statistics.median(took) < 0.05, took
    assert client.post("/v1/chat/completions", json={"model": FILE, "max_tokens": 2,
                                                      "messages": [{"role": "user", "content": "Hi"}]}).status_code == 200


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/api/chat"])
def test_a_30_mb_prompt_is_refused_fast_and_health_stays_fast(app, route):
    client = app.test_client()
    text = "abcdefghij" * 3_000_000
    body = json.dumps({"model": FILE, "messages": [{"role": "user", "content": text}], "stream": False})
    t0 = time.monotonic()
    busy = gevent.spawn(client.post, route, data=body, content_type="application/json")
    gevent.sleep(0)
    took = health_latencies(client, busy)
    r = busy.get()
    assert r.status_code == 400 and time.monotonic() - t0 < 5
    err = r.get_json()["error"]
    assert "context holds 512" in (err["message"] if isinstance(err, dict) else err)
    assert max(took) < 0.05, took


def test_a_prompt_just_over_the_context_is_still_counted_exactly(app):
    """The early refusal is only a lower bound: a prompt it lets through is tokenized and checked."""
    client = app.test_client()
    r = client.post("/v1/chat/completions", json={"model": FILE, "max_tokens": 2,
                                                  "messages": [{"role": "user", "content": "word " * 600}]})
    assert r.status_code == 400 and "the prompt is 6" in r.get_json()["error"]["message"]
