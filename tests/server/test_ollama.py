"""Ollama dialect through the Flask test client on SmolLM2: shapes, NDJSON, cache fields and errors."""
import pytest

from tensorsharp.testing.server import ndjson_lines

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "smollm2-135m:latest"   # how Ollama clients expect to find it listed
FINAL = {"done_reason", "total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
         "eval_count", "eval_duration", "prompt_cache_hit_tokens", "prompt_cache_hit_ratio"}


def gen(prompt="What is 1+1?", **kw):
    return {"model": FILE, "prompt": prompt, "stream": False, "options": {"num_predict": 10}, **kw}


def chat(messages, **kw):
    return {"model": FILE, "messages": messages, "stream": False, "options": {"num_predict": 10}, **kw}


def test_generate_non_streaming(client):
    r = client.post("/api/generate", json=gen())
    assert r.status_code == 200
    body = r.get_json()
    assert body["model"] == FILE and body["done"] is True and body["response"]
    assert FINAL <= set(body)
    assert body["prompt_cache_hit_tokens"] == 0 and body["prompt_cache_hit_ratio"] == 0.0
    assert body["eval_count"] <= 10 and body["total_duration"] >= body["eval_duration"] > 0
    # /api/generate always starts fresh, even for the same prompt again.
    assert client.post("/api/generate", json=gen()).get_json()["prompt_cache_hit_tokens"] == 0


def test_generate_streaming(client):
    r = client.post("/api/generate", json={**gen("Tell me a joke."), "stream": True})
    assert r.status_code == 200 and r.mimetype == "application/x-ndjson"
    lines = ndjson_lines(r.data)
    assert all(not line["done"] for line in lines[:-1]) and lines[-1]["done"]
    assert FINAL <= set(lines[-1]) and lines[-1]["done_reason"] == "length"
    assert "".join(line["response"] for line in lines)
    streamed = "".join(line["response"] for line in lines)
    assert streamed == client.post("/api/generate", json=gen("Tell me a joke.")).get_json()["response"]


def test_stream_is_the_default(client):
    r = client.post("/api/generate", json={"model": FILE, "prompt": "Hi", "options": {"num_predict": 3}})
    assert r.mimetype == "application/x-ndjson" and ndjson_lines(r.data)[-1]["done"]


def test_generate_raw_and_system(client):
    raw = client.post("/api/generate", json=gen("The capital of France is", raw=True)).get_json()
    assert "Paris" in raw["response"] and raw["prompt_eval_count"] == 5
    sys_ = client.post("/api/generate", json=gen(system="Answer in French.")).get_json()
    assert sys_["prompt_eval_count"] != client.post("/api/generate", json=gen()).get_json()["prompt_eval_count"]


def test_empty_prompt_loads(client):
    body = client.post("/api/generate", json={"model": FILE}).get_json()
    assert body["done"] and body["done_reason"] == "load"


def test_options(client):
    stopped = client.post("/api/generate", json={**gen(), "options": {"num_predict": 10, "stop": ["1"]}}).get_json()
    assert "1" not in stopped["response"] and stopped["done_reason"] == "stop"
    seeded = {**gen("Name a fruit."), "options": {"num_predict": 8, "temperature": 1.5, "top_k": 50, "top_p": 0.95,
                                                  "min_p": 0.01, "repeat_penalty": 1.1, "repeat_last_n": 32,
                                                  "presence_penalty": 0.5, "frequency_penalty": 0.5, "seed": 42,
                                                  "num_ctx": 256}}
    a, b = (client.post("/api/generate", json=seeded).get_json() for _ in range(2))
    assert a["response"] == b["response"]
    assert client.post("/api/generate", json={**gen(), "options": {"num_predict": 2}}).get_json()["eval_count"] == 2


def test_num_ctx_limits_the_request(client):
    r = client.post("/api/generate", json={**gen("word " * 100), "options": {"num_ctx": 64}})
    assert r.status_code == 400 and "64" in r.get_json()["error"]


def test_chat_and_cache_hit_on_second_turn(client):
    first = [{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": "What is the capital of France?"}]
    a = client.post("/api/chat/ollama", json=chat(first)).get_json()
    assert a["message"]["role"] == "assistant" and a["message"]["content"] and FINAL <= set(a)
    second = first + [a["message"], {"role": "user", "content": "And of Italy?"}]
    b = client.post("/api/chat", json=chat(second)).get_json()
    assert b["prompt_cache_hit_tokens"] > a["prompt_eval_count"]
    assert 0 < b["prompt_cache_hit_ratio"] < 1


def test_chat_streaming(client):
    r = client.post("/api/chat", json={**chat([{"role": "user", "content": "Hello!"}]), "stream": True})
    lines = ndjson_lines(r.data)
    assert r.mimetype == "application/x-ndjson"
    assert all(line["message"]["role"] == "assistant" for line in lines)
    assert lines[-1]["done"] and FINAL <= set(lines[-1]) and lines[-1]["message"]["content"] == ""


def test_generate_context_round_trip(client):
    first = client.post("/api/generate", json=gen("My name is Ada.")).get_json()
    context = first["context"]
    assert all(isinstance(t, int) for t in context)
    assert len(context) == first["prompt_eval_count"] + first["eval_count"]
    alone = client.post("/api/generate", json=gen("What is my name?")).get_json()
    after = client.post("/api/generate", json=gen("What is my name?", context=context)).get_json()
    # The earlier conversation comes first; the new prompt follows it without a second BOS.
    assert after["prompt_eval_count"] == len(context) + alone["prompt_eval_count"] - 1
    assert after["context"][:len(context)] == context
    r = client.post("/api/generate", json=gen("Hi", context=[10 ** 9]))
    assert r.status_code == 400 and "context" in r.get_json()["error"]


@pytest.mark.parametrize("extra", [{"system": "Be brief."}, {"template": "{{ .Prompt }}"}, {"context": [1, 2]}])
def test_raw_refuses_what_it_would_ignore(client, extra):
    r = client.post("/api/generate", json=gen(raw=True, **extra))
    assert r.status_code == 400 and r.get_json() == {"error": "raw mode does not support template, system, or context"}


@pytest.mark.parametrize("think", [True, "high", "medium", "low", "max"])
def test_think_on_a_model_that_cannot(client, think):
    for path, body in (("/api/generate", gen(think=think)), ("/api/chat", chat([{"role": "user", "content": "Hi"}],
                                                                               think=think))):
        r = client.post(path, json=body)
        assert r.status_code == 400 and r.get_json() == {"error": f'"{FILE}" does not support thinking'}
    assert client.post("/api/generate", json=gen(think=False)).status_code == 200
    r = client.post("/api/generate", json=gen(think="banana"))
    assert r.status_code == 400 and r.get_json()["error"].startswith('invalid think value: "banana"')


def test_logprobs(client):
    body = chat([{"role": "user", "content": "Name a fruit."}], logprobs=True, top_logprobs=3)
    out = client.post("/api/chat", json=body).get_json()
    assert len(out["logprobs"]) == out["eval_count"]
    assert "".join(lp["token"] for lp in out["logprobs"]).startswith(out["message"]["content"])
    for lp in out["logprobs"]:
        assert lp["logprob"] <= 0 and len(lp["top_logprobs"]) == 3
        assert lp["top_logprobs"][0]["logprob"] >= lp["logprob"] and bytes(lp["bytes"]).decode() == lp["token"]
    lines = ndjson_lines(client.post("/api/generate", json={**gen("Name a fruit."), "stream": True,
                                                              "logprobs": True}).data)
    streamed = [lp for line in lines for lp in line.get("logprobs", [])]
    assert len(streamed) == lines[-1]["eval_count"] and all(lp["top_logprobs"] == [] for lp in streamed)
    assert "logprobs" not in client.post("/api/generate", json=gen()).get_json()
    r = client.post("/api/generate", json=gen(logprobs=True, top_logprobs=21))
    assert r.status_code == 400 and "top_logprobs" in r.get_json()["error"]


def test_images_refused_by_text_model(client):
    r = client.post("/api/generate", json=gen(images=["iVBORw0KGgo="]))
    assert r.status_code == 400 and "does not support images" in r.get_json()["error"]
    msgs = [{"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo="]}]
    assert client.post("/api/chat", json=chat(msgs)).status_code == 400


def test_tags_show_ps_version(client):
    m = next(m for m in client.get("/api/tags").get_json()["models"] if m["name"] == NAME)
    assert m["model"] == NAME
    assert m["details"]["format"] == "gguf" and m["details"]["quantization_level"] == "Q4_1"
    for key, name in (("model", NAME), ("name", FILE)):
        show = client.post("/api/show", json={key: name}).get_json()
        assert show["model_info"]["llama.context_length"] == 8192
        assert show["details"]["family"] == "llama" and "completion" in show["capabilities"]
        assert "im_start" in show["template"] and "num_ctx 512" in show["parameters"]
    (p,) = client.get("/api/ps").get_json()["models"]
    assert p["name"] == p["model"] == NAME and p["context_length"] == 512
    assert client.get("/api/version").get_json()["version"]


def test_every_listing_names_the_model_alike_and_requests_take_each_of_its_names(client):
    assert NAME in {m["name"] for m in client.get("/api/tags").get_json()["models"]}
    assert NAME in {m["id"] for m in client.get("/v1/models").get_json()["data"]}
    assert NAME in {m["model"] for m in client.get("/api/ps").get_json()["models"]}
    assert client.get("/api/models").get_json()["loaded"] == NAME
    # The registry name, its alias, the file and its basename, bare or tagged :latest.
    for name in (NAME, "smollm2-135m", "smollm2", "SMOLLM2:latest", FILE, "SmolLM2-135M-Instruct.Q4_1"):
        r = client.post("/api/generate", json={"model": name, "prompt": "Hi", "stream": False,
                                               "options": {"num_predict": 1}})
        assert r.status_code == 200 and r.get_json()["model"] == name, name
    r = client.post("/api/show", json={"model": "smollm2-135m:q8"})
    assert r.status_code == 404 and NAME in r.get_json()["error"]


@pytest.mark.parametrize("path, body, status, words", [
    ("/api/generate", {"model": "llama3", "prompt": "x"}, 404, ["llama3", "not found"]),
    ("/api/show", {"model": "llama3"}, 404, ["llama3"]),
    ("/api/show", {}, 400, ["'model'"]),
    ("/api/generate", {"prompt": "x"}, 400, ["'model'"]),
    ("/api/generate", {"model": FILE, "prompt": 7}, 400, ["'prompt'"]),
    ("/api/generate", {"model": FILE, "prompt": "x", "options": {"temperature": "warm"}}, 400, ["'options.temperature'"]),
    ("/api/generate", {"model": FILE, "prompt": "x", "options": {"num_predict": -5}}, 400, ["'options.num_predict'"]),
    ("/api/generate", {"model": FILE, "prompt": "x", "options": {"top_p": 2}}, 400, ["'options.top_p'"]),
    ("/api/generate", {"model": FILE, "prompt": "x", "format": 5}, 400, ["'format'"]),
    ("/api/chat", {"model": FILE, "messages": [{"role": "user"}, {"content": "x"}]}, 400, ["'messages[1].role'"]),
    ("/api/chat/ollama", {"model": FILE, "messages": "hi"}, 400, ["'messages'"]),
])
def test_errors(client, path, body, status, words):
    r = client.post(path, json=body)
    assert r.status_code == status, r.data
    err = r.get_json()
    assert list(err) == ["error"]
    for w in words:
        assert w in err["error"]


def test_malformed_json_and_long_prompt(client):
    r = client.post("/api/generate", data="{", content_type="application/json")
    assert r.status_code == 400 and "JSON" in r.get_json()["error"]
    r = client.post("/api/generate", json=gen("word " * 600))
    assert r.status_code == 400 and "512" in r.get_json()["error"]


def test_unknown_route_is_json_404(client):
    r = client.post("/api/nothing", json={})
    assert r.status_code == 404 and list(r.get_json()) == ["error"]
