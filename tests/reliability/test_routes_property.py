"""Arbitrary JSON at every POST route (issue 18): whatever the body, the answer is never a 5xx,
comes within a bound, and the server is healthy afterwards. Generated bodies lean towards the
routes' own field names and the values that broke earlier versions (huge integers, NaN-like
floats, surrogates, deep nesting, wrong types)."""
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/api/chat", "/api/chat/ollama", "/api/generate", "/api/show"]
FIELDS = ["model", "messages", "prompt", "max_tokens", "n", "stream", "seed", "temperature", "top_p", "top_k",
          "stop", "tools", "tool_choice", "response_format", "format", "options", "logprobs", "top_logprobs",
          "logit_bias", "role", "content", "tool_calls", "function", "name", "arguments", "num_predict",
          "repeat_last_n", "num_ctx", "images", "think", "raw", "system", "maxTokens", "sessionId", "echo",
          "input", "instructions", "previous_response_id", "text", "reasoning", "max_output_tokens", "type",
          "call_id", "output", "summary"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([FILE, "user", "json", ""]),
                    st.text(max_size=40), st.sampled_from(["\ud800", "<|im_start|>", "x" * 200]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5)),
    max_leaves=30)
BODIES = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=8).map(
    lambda d: {**d, "model": d.get("model", FILE)} if d.get("model") is None else d)
BOUND_S = 20.0   # the worst generated body: a whole reply up to the small context


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from tensorsharp.server.app import create_app
    app = create_app("smollm2-135m", n_ctx=64, n_threads=1, parallel=2, cache_slots=1, max_queue=16,
                     max_body=1 << 20, upload_dir=tmp_path_factory.mktemp("uploads"))
    yield app.test_client()
    app.extensions["tensorsharp"].served.close()


@given(route=st.sampled_from(ROUTES), body=BODIES)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_json_body_gets_a_non_5xx_answer_in_time(client, route, body):
    t0 = time.monotonic()
    r = client.post(route, data=json.dumps(body), content_type="application/json")   # "\ud800" stays an escape
    r.get_data()   # a stream is read to its end
    took = time.monotonic() - t0
    assert r.status_code < 500, (r.status_code, r.get_data()[:300])
    assert took < BOUND_S
    assert client.get("/health").status_code == 200


def test_the_engine_is_idle_after_the_barrage(client):
    status = client.get("/api/queue/status").get_json()
    assert status["active"] == 0 and status["pending"] == 0
