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


def hub_stalls(client, busy_request) -> tuple[object, list[float]]:
    """busy_request's result, and how late the hub woke a greenlet that asks /health and sleeps
    5 ms, again and again, while busy_request ran in another greenlet: work done on the hub shows
    up as lateness, work on a worker thread only where it holds the GIL."""
    late = []

    def probe():
        while True:
            t = time.monotonic()
            assert client.get("/health").status_code == 200
            gevent.sleep(0.005)
            late.append(time.monotonic() - t - 0.005)

    prober = gevent.spawn(probe)
    gevent.sleep(0.02)
    try:
        result = gevent.spawn(busy_request).get()
        gevent.sleep(0.02)
    finally:
        prober.kill()
    return result, late


def test_a_looping_template_is_stopped_and_health_stays_fast(app):
    served = app.extensions["tensorsharp"].served
    client = app.test_client()
    original = served.template
    served.template = ChatTemplate(LOOPING)
    try:
        t0 = time.monotonic()
        r, late = hub_stalls(client, lambda: client.post(
            "/v1/chat/completions", json={"model": FILE, "messages": [{"role": "user", "content": "Hi"}],
                                          "max_tokens": 2}))
        elapsed = time.monotonic() - t0
    finally:
        served.template = original
    assert r.status_code == 500
    message = r.get_json()["error"]["message"]
    assert "chat template of smollm2-135m:latest was stopped" in message and "longer than 2 s" in message
    assert elapsed < 10
    # The template runs on a worker thread for 2 s; the hub gets the GIL back every switch interval.
    # On the hub it would leave the probe a handful of wake-ups, each seconds late.
    assert len(late) >= 50 and statistics.median(late) < 0.05, late
    assert client.post("/v1/chat/completions", json={"model": FILE, "max_tokens": 2,
                                                      "messages": [{"role": "user", "content": "Hi"}]}).status_code == 200


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/api/chat"])
def test_a_30_mb_prompt_is_refused_fast_and_health_stays_fast(app, route):
    client = app.test_client()
    text = "abcdefghij" * 3_000_000
    body = json.dumps({"model": FILE, "messages": [{"role": "user", "content": text}], "stream": False})
    t0 = time.monotonic()
    r, late = hub_stalls(client, lambda: client.post(route, data=body, content_type="application/json"))
    assert r.status_code == 400 and time.monotonic() - t0 < 5
    err = r.get_json()["error"]
    assert "context holds 512" in (err["message"] if isinstance(err, dict) else err)
    # Tokenizing or rendering 30 MB on the hub would stall it for seconds. What remains is reading
    # the body and parsing it, which holds the GIL ~50 ms even on a worker thread (json.loads is
    # one C call); a slow machine or a garbage collection may double or triple that.
    assert max(late) < 0.5, late


def test_a_prompt_just_over_the_context_is_still_counted_exactly(app):
    """The early refusal is only a lower bound: a prompt it lets through is tokenized and checked."""
    client = app.test_client()
    r = client.post("/v1/chat/completions", json={"model": FILE, "max_tokens": 2,
                                                  "messages": [{"role": "user", "content": "word " * 600}]})
    assert r.status_code == 400 and "the prompt is 6" in r.get_json()["error"]["message"]
