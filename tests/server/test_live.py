"""A real `tensorsharp serve` process on SmolLM2, used by the official openai and ollama clients,
plain HTTP for the web UI protocol, KV reuse across turns, /health latency and dropped clients."""
import json
import socket
import statistics
import time

import ollama
import openai
import pytest
import requests

from tensorsharp.testing.server import running, serve_args

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LONG = [{"role": "user", "content": "Write a very long story about a dragon."}]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    # One request at a time, so queueing is observable.
    with running(serve_args("smollm2-135m", "--ctx", "1024", "--parallel", "1"),
                 tmp_path_factory.mktemp("live")) as url:
        yield url


def status(base):
    return requests.get(base + "/api/queue/status").json()


def wait_idle(base, within=5.0):
    deadline = time.monotonic() + within
    while status(base)["active"] or status(base)["pending"]:
        assert time.monotonic() < deadline, f"engine still busy: {status(base)}"
        time.sleep(0.02)


def long_stream(base):
    """A streaming request that would run for a long time; returns its line iterator once it runs."""
    r = requests.post(base + "/v1/chat/completions", stream=True,
                      json={"model": FILE, "messages": LONG, "max_tokens": 900, "stream": True})
    lines = r.iter_lines()
    next(lines)
    return r, lines


def test_openai_client(base):
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
    assert "smollm2-135m:latest" in [m.id for m in client.models.list()]
    r = client.chat.completions.create(model=FILE, messages=[{"role": "user", "content": "What is 2+3?"}],
                                       max_tokens=20, temperature=0)
    assert "5" in r.choices[0].message.content and r.usage.prompt_tokens > 0
    pieces, usage = [], None
    for chunk in client.chat.completions.create(model=FILE, messages=[{"role": "user", "content": "What is 2+3?"}],
                                                max_tokens=20, stream=True, stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(pieces) == r.choices[0].message.content
    assert usage.prompt_tokens_details.cached_tokens > 0
    c = client.completions.create(model=FILE, prompt="The capital of France is", max_tokens=3)
    assert "Paris" in c.choices[0].text
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=FILE, messages=[])


def test_ollama_client(base):
    client = ollama.Client(host=base)
    assert "smollm2-135m:latest" in [m.model for m in client.list().models]
    show = client.show(FILE)
    assert show.details.family == "llama" and show.modelinfo["llama.context_length"] == 8192
    assert "completion" in show.capabilities
    r = client.chat(model=FILE, messages=[{"role": "user", "content": "What is 2+3?"}], options={"num_predict": 20})
    assert "5" in r.message.content and r.done_reason == "stop" and r.eval_count > 0
    parts = list(client.chat(model=FILE, messages=[{"role": "user", "content": "What is 2+3?"}], stream=True,
                             options={"num_predict": 20}))
    assert "".join(p.message.content for p in parts) == r.message.content and parts[-1].done
    g = client.generate(model=FILE, prompt="Why is the sky blue?", options={"num_predict": 8})
    assert g.response and g.eval_count == 8
    streamed = "".join(p.response for p in client.generate(model=FILE, prompt="Why is the sky blue?", stream=True,
                                                            options={"num_predict": 8}))
    assert streamed == g.response
    assert client.ps().models[0].model == "smollm2-135m:latest"
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="llama3", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404


def test_webui_protocol_and_queue_position(base):
    busy, _ = long_stream(base)
    r = requests.post(base + "/api/chat", stream=True, json={"messages": [{"role": "user", "content": "Hi"}],
                                                             "maxTokens": 5, "sessionId": None})
    assert r.headers["Content-Type"].startswith("text/event-stream")
    frames = r.iter_lines()
    first = json.loads(next(l for l in frames if l)[len(b"data: "):])
    second = json.loads(next(l for l in frames if l)[len(b"data: "):])
    assert set(first) == {"sessionId"} and second == {"queuePosition": 1}
    r.close()   # a queued client that leaves is taken out of the queue
    deadline = time.monotonic() + 5
    while status(base)["pending"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    busy.close()
    wait_idle(base)
    sid = requests.post(base + "/api/sessions").json()["sessionId"]
    body = requests.post(base + "/api/chat", json={"messages": [{"role": "user", "content": "Hi"}], "maxTokens": 5,
                                                   "sessionId": sid}).text
    events = [json.loads(line[6:]) for line in body.split("\n\n") if line.startswith("data: ")]
    assert events[0] == {"sessionId": sid} and events[-1]["done"] and any("token" in e for e in events)
    assert requests.delete(f"{base}/api/sessions/{sid}").json() == {"deleted": True}


def test_second_turn_reuses_the_cache_and_is_faster(base):
    system = {"role": "system", "content": "You are a careful assistant. " + "Always answer briefly and politely. " * 30}
    turn1 = [system, {"role": "user", "content": "What is the capital of France?"}]
    body = {"model": FILE, "stream": False, "options": {"num_predict": 8}}
    a = requests.post(base + "/api/chat/ollama", json={**body, "messages": turn1}).json()
    turn2 = turn1 + [a["message"], {"role": "user", "content": "And of Spain?"}]
    b = requests.post(base + "/api/chat/ollama", json={**body, "messages": turn2}).json()
    assert a["prompt_eval_count"] > 200
    assert b["prompt_cache_hit_tokens"] > a["prompt_eval_count"]
    assert b["prompt_eval_duration"] < a["prompt_eval_duration"]
    o = requests.post(base + "/v1/chat/completions", json={"model": FILE, "messages": turn2, "max_tokens": 8}).json()
    assert o["usage"]["prompt_tokens_details"]["cached_tokens"] > a["prompt_eval_count"]


def test_health_answers_quickly_during_a_long_generation(base):
    busy, lines = long_stream(base)
    with requests.Session() as s:
        s.get(base + "/health")
        took = []
        for _ in range(20):
            t = time.perf_counter()
            assert s.get(base + "/health").json() == {"status": "ok"}
            took.append(time.perf_counter() - t)
            next(lines)   # the generation is really running meanwhile
    busy.close()
    wait_idle(base)
    took.sort()
    assert statistics.median(took) < 0.05 and took[int(0.9 * len(took))] < 0.05, took


def test_disconnect_mid_stream_frees_the_engine(base):
    busy, lines = long_stream(base)
    for _ in range(3):
        next(lines)
    busy.close()
    wait_idle(base, within=3)
    r = requests.post(base + "/api/generate", json={"model": FILE, "prompt": "Hi", "stream": False,
                                                    "options": {"num_predict": 3}})
    assert r.json()["eval_count"] == 3


def test_disconnect_during_a_non_streaming_request_frees_the_engine(base):
    payload = json.dumps({"model": FILE, "prompt": "Tell me a long story.", "stream": False,
                          "options": {"num_predict": 900}}).encode()
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
        deadline = time.monotonic() + 5
        while not status(base)["active"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    wait_idle(base, within=3)


def test_new_message_supersedes_a_running_reply_in_its_session(base):
    """The page's Stop + send: the server may not have seen the first connection drop yet."""
    sid = requests.post(base + "/api/sessions").json()["sessionId"]
    first = requests.post(base + "/api/chat", stream=True,
                          json={"messages": LONG, "sessionId": sid, "maxTokens": 900})
    frames = (json.loads(x[5:]) for x in first.iter_lines() if x.startswith(b"data:"))
    assert next(frames) == {"sessionId": sid}
    assert "token" in next(f for f in frames if "token" in f)
    second = requests.post(base + "/api/chat", stream=True, json={
        "messages": [{"role": "user", "content": "Say hi."}], "sessionId": sid, "newChat": True, "maxTokens": 8})
    assert second.status_code == 200
    last = [json.loads(x[5:]) for x in second.iter_lines() if x.startswith(b"data:")][-1]
    assert last["done"] is True and last["finishReason"] in ("stop", "length")
    assert [f for f in frames if f.get("done")][0]["finishReason"] == "cancelled"
    first.close()
    wait_idle(base)
