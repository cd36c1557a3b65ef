"""OpenAI dialect through the Flask test client on SmolLM2: shapes, streaming, options and errors."""
import pytest

from tensorsharp.testing.server import sse_events

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "smollm2-135m:latest"


def chat(content="What is 2+3?", **kw):
    return {"model": FILE, "messages": [{"role": "user", "content": content}], "max_tokens": 12, **kw}


def error_of(r, status, *words):
    assert r.status_code == status, r.data
    err = r.get_json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    for w in words:
        assert w in err["message"]
    return err


def test_chat_completion_shape(client):
    r = client.post("/v1/chat/completions", json=chat())
    assert r.status_code == 200 and r.mimetype == "application/json"
    body = r.get_json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == NAME
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and "5" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    u = body["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["prompt_tokens_details"]["cached_tokens"] >= 0


def test_model_names_accepted(client):
    for name in (FILE, FILE[:-5], "smollm2-135m", "SMOLLM2"):
        assert client.post("/v1/chat/completions", json={**chat(), "model": name, "max_tokens": 1}).status_code == 200


def test_streaming_chunks(client):
    r = client.post("/v1/chat/completions", json=chat(stream=True, stream_options={"include_usage": True}))
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    events = sse_events(r.data)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [f["choices"][0]["finish_reason"] for f in finals] == ["stop"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert "5" in text
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    # The same request again finds its prompt in the cache.
    assert usage["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


def test_stream_without_usage_has_no_usage_chunk(client):
    events = sse_events(client.post("/v1/chat/completions", json=chat(stream=True)).data)
    assert all(e == "[DONE]" or e["choices"] for e in events)


def test_length_and_max_completion_tokens(client):
    body = client.post("/v1/chat/completions", json=chat("Tell me a story.", max_tokens=None,
                                                           max_completion_tokens=3)).get_json()
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 3


def test_stop_string(client):
    body = client.post("/v1/chat/completions", json=chat(stop="3")).get_json()
    text = body["choices"][0]["message"]["content"]
    assert "3" not in text and body["choices"][0]["finish_reason"] == "stop"


def test_content_parts_and_unknown_fields(client):
    parts = [{"type": "text", "text": "What is "}, {"type": "text", "text": "2+3?"}]
    body = {"model": FILE, "messages": [{"role": "user", "content": parts}], "max_tokens": 12,
            "some_future_field": {"x": 1}, "user": "abc"}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert r.get_json()["choices"][0]["message"]["content"] == \
        client.post("/v1/chat/completions", json=chat()).get_json()["choices"][0]["message"]["content"]


def test_logprobs(client):
    body = client.post("/v1/chat/completions", json=chat(logprobs=True, top_logprobs=2, max_tokens=3)).get_json()
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == 3
    for entry in content:
        assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 2
        assert entry["top_logprobs"][0]["token"] == entry["token"]   # greedy: the best one
        assert bytes(entry["bytes"]).decode() == entry["token"]


def test_logit_bias_bans_a_token(client, app):
    served = app.extensions["tensorsharp"].served
    first = client.post("/v1/chat/completions", json=chat(logprobs=True, max_tokens=1)).get_json()
    tok = served.tokenizer.token_id(first["choices"][0]["logprobs"]["content"][0]["token"])
    banned = client.post("/v1/chat/completions", json=chat(max_tokens=1, logit_bias={str(tok): -100})).get_json()
    assert banned["choices"][0]["message"]["content"] != first["choices"][0]["message"]["content"]


def test_n_choices_with_sampling(client):
    body = client.post("/v1/chat/completions", json=chat("Name an animal.", n=2, temperature=1.0, seed=7,
                                                           max_tokens=6)).get_json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    again = client.post("/v1/chat/completions", json=chat("Name an animal.", n=2, temperature=1.0, seed=7,
                                                            max_tokens=6)).get_json()
    assert [c["message"] for c in body["choices"]] == [c["message"] for c in again["choices"]]


def test_image_part_refused_by_text_model(client):
    parts = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    r = client.post("/v1/chat/completions", json={"model": FILE, "messages": [{"role": "user", "content": parts}]})
    error_of(r, 400, "does not support images")


def test_completions(client):
    r = client.post("/v1/completions", json={"model": FILE, "prompt": "The capital of France is", "max_tokens": 4,
                                            "logprobs": 1, "echo": True})
    body = r.get_json()
    assert body["object"] == "text_completion"
    (c,) = body["choices"]
    assert c["text"].startswith("The capital of France is") and "Paris" in c["text"]
    assert len(c["logprobs"]["tokens"]) == 4 and c["finish_reason"] == "length"
    events = sse_events(client.post("/v1/completions", json={"model": FILE, "prompt": ["Hello", "Goodbye"],
                                                              "max_tokens": 3, "stream": True}).data)
    assert events[-1] == "[DONE]"
    assert {e["choices"][0]["index"] for e in events[:-1]} == {0, 1}


def test_prompt_list_longer_than_the_queue(client):
    """The app's queue holds 4; seven prompts of one request are one client's work, not a full server."""
    prompts = [f"Count to {i}:" for i in range(7)]
    for stream in (False, True):
        r = client.post("/v1/completions", json={"model": FILE, "prompt": prompts, "max_tokens": 2, "stream": stream})
        assert r.status_code == 200, r.data
        if stream:
            events = sse_events(r.data)
            assert {e["choices"][0]["index"] for e in events[:-1]} == set(range(7))
        else:
            assert [c["index"] for c in r.get_json()["choices"]] == list(range(7))


def test_models(client):
    body = client.get("/v1/models").get_json()
    assert body["object"] == "list" and NAME in [m["id"] for m in body["data"]]
    for name in (NAME, "smollm2-135m", FILE):
        assert client.get(f"/v1/models/{name}").get_json()["id"] == NAME
    error_of(client.get("/v1/models/nope"), 404, "nope")


@pytest.mark.parametrize("body, field", [
    ({"model": FILE, "messages": "hi"}, "messages"),
    ({"model": FILE, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": FILE, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": 3, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({**chat(), "max_tokens": "ten"}, "max_tokens"),
    ({**chat(), "temperature": "hot"}, "temperature"),
    ({**chat(), "stream": "yes"}, "stream"),
    ({**chat(), "stop": [1, 2]}, "stop"),
])
def test_wrong_types_name_the_field(client, body, field):
    err = error_of(client.post("/v1/chat/completions", json=body), 400, f"'{field}'")
    assert err["type"] == "invalid_request_error" and err["param"] == field


@pytest.mark.parametrize("extra, field", [
    ({"max_tokens": -1}, "max_tokens"), ({"temperature": 5}, "temperature"), ({"top_p": 1.5}, "top_p"),
    ({"presence_penalty": -3}, "presence_penalty"), ({"n": 0}, "n"), ({"top_logprobs": 3}, "top_logprobs"),
    ({"logit_bias": {"999999": 1}}, "logit_bias"),
])
def test_bad_values(client, extra, field):
    error_of(client.post("/v1/chat/completions", json=chat(**extra)), 400, field)


def test_malformed_and_empty(client):
    error_of(client.post("/v1/chat/completions", data="{not json", content_type="application/json"), 400, "JSON")
    error_of(client.post("/v1/chat/completions", data="[1, 2]", content_type="application/json"), 400, "object")
    error_of(client.post("/v1/chat/completions", json={"model": FILE, "messages": []}), 400, "empty")


def test_unknown_model_is_404(client):
    err = error_of(client.post("/v1/chat/completions", json={**chat(), "model": "gpt-4o"}), 404, "gpt-4o")
    assert err["code"] == "model_not_found"


def test_prompt_longer_than_the_context(client):
    r = client.post("/v1/chat/completions", json=chat("word " * 600))
    err = error_of(r, 400, "512")
    assert err["code"] == "context_length_exceeded"
    assert any(w.isdigit() and int(w) > 512 for w in err["message"].split())


def test_body_too_large_is_413(client):
    r = client.post("/v1/chat/completions", data=b"{" + b" " * (2 << 20) + b"}", content_type="application/json")
    error_of(r, 413, "limit")


def test_unknown_response_format_type_is_refused(client):
    error_of(client.post("/v1/chat/completions", json=chat(response_format={"type": "xml"})), 400, "response_format")

def test_ignore_eos_generates_the_full_length(client):
    """llama-server's and vLLM's extension: a reply that would end at once runs to max_tokens."""
    short = client.post("/v1/chat/completions", json=chat("What is 2+3?", max_tokens=60)).get_json()
    assert short["choices"][0]["finish_reason"] == "stop" and short["usage"]["completion_tokens"] < 60
    full = client.post("/v1/chat/completions", json=chat("What is 2+3?", max_tokens=60, ignore_eos=True)).get_json()
    assert full["choices"][0]["finish_reason"] == "length" and full["usage"]["completion_tokens"] == 60
