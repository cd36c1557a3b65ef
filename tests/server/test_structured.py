"""Structured outputs and forced tool calls through all dialects on SmolLM2 (constrained decoding)."""
import json

import jsonschema

from tensorsharp.testing.server import ndjson_lines, sse_events

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                         "country": {"type": "string", "maxLength": 20}},
        "required": ["city", "country"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                    "units": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city"]}}}


def chat(content="Extract the city and country from: Paris, France.", **kw):
    return {"model": FILE, "messages": [{"role": "user", "content": content}], "max_tokens": 80, **kw}


def schema_format(schema):
    return {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}}


def test_json_schema_output_validates(client):
    r = client.post("/v1/chat/completions", json=chat(response_format=schema_format(CITY), temperature=0.8, seed=3))
    assert r.status_code == 200, r.data
    choice = r.get_json()["choices"][0]
    jsonschema.validate(json.loads(choice["message"]["content"]), CITY)
    assert choice["finish_reason"] == "stop"


def test_json_schema_streamed_output_validates(client):
    r = client.post("/v1/chat/completions", json=chat(response_format=schema_format(CITY), stream=True))
    events = sse_events(r.data)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e != "[DONE]")
    jsonschema.validate(json.loads(text), CITY)


def test_json_object_output_parses(client):
    r = client.post("/v1/chat/completions", json=chat(response_format={"type": "json_object"}))
    assert isinstance(json.loads(r.get_json()["choices"][0]["message"]["content"]), dict)


def test_ollama_format_schema_and_json(client):
    for fmt, check in ((CITY, lambda v: jsonschema.validate(v, CITY)), ("json", lambda v: isinstance(v, dict))):
        body = {"model": FILE, "messages": [{"role": "user", "content": "Paris, France: city and country?"}],
                "format": fmt, "stream": False, "options": {"num_predict": 80}}
        r = client.post("/api/chat", json=body)
        assert r.status_code == 200, r.data
        check(json.loads(r.get_json()["message"]["content"]))


def test_ollama_generate_streams_valid_json(client):
    body = {"model": FILE, "prompt": "Paris, France: city and country?", "format": CITY, "options": {"num_predict": 80}}
    lines = ndjson_lines(client.post("/api/generate", json=body).data)
    assert lines[-1]["done"] is True
    jsonschema.validate(json.loads("".join(x["response"] for x in lines)), CITY)


def test_invalid_schema_is_a_400_saying_why(client):
    bad = {"type": "object", "properties": {"a": {"type": "string", "maxLength": -1}}}
    r = client.post("/v1/chat/completions", json=chat(response_format=schema_format(bad)))
    assert r.status_code == 400 and "maxLength" in r.get_json()["error"]["message"]
    r = client.post("/api/chat", json={"model": FILE, "messages": [{"role": "user", "content": "x"}],
                                       "format": {"type": "nonsense"}, "stream": False})
    assert r.status_code == 400 and "schema" in r.get_json()["error"]


def test_schema_with_tools_is_refused(client):
    r = client.post("/v1/chat/completions", json=chat(response_format=schema_format(CITY), tools=[WEATHER]))
    assert r.status_code == 400 and "tools" in r.get_json()["error"]["message"]


def test_output_cut_off_ends_with_length_and_the_partial_json(client):
    # As in OpenAI's API, Ollama and llama-server; a 422 here kept client libraries from raising
    # their own truncation errors (openai's LengthFinishReasonError, instructor's IncompleteOutput).
    long = {"type": "object", "properties": {"story": {"type": "string", "minLength": 200}}, "required": ["story"]}
    body = chat("Tell a story.", response_format=schema_format(long), max_tokens=5)
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.data
    choice = r.get_json()["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["content"].startswith("{")
    events = sse_events(client.post("/v1/chat/completions", json={**body, "stream": True}).data)
    assert events[-1] == "[DONE]" and not any("error" in e for e in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "length"
    r = client.post("/api/chat", json={"model": FILE, "messages": body["messages"], "format": long,
                                       "stream": False, "options": {"num_predict": 5}})
    assert r.status_code == 200 and r.get_json()["done_reason"] == "length"


def test_tool_choice_required_yields_one_call_unless_parallel_calls_are_asked_for(client):
    # Given the choice, this 135M model at T=0.8 repeats the same call until max_tokens.
    body = chat("What is the weather in Paris?", tools=[WEATHER], tool_choice="required", temperature=0.8, seed=1)
    several = client.post("/v1/chat/completions", json={**body, "parallel_tool_calls": True}).get_json()
    assert len(several["choices"][0]["message"]["tool_calls"]) > 1
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.data
    choice = r.get_json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER["function"]["parameters"])


def test_tool_choice_required_streams_call_deltas(client):
    r = client.post("/v1/chat/completions", json=chat("Weather in Oslo?", tools=[WEATHER], tool_choice="required",
                                                       stream=True))
    events = [e for e in sse_events(r.data) if e != "[DONE]"]
    calls = [tc for e in events for tc in e["choices"][0]["delta"].get("tool_calls") or []]
    assert calls and calls[0]["id"].startswith("call_") and calls[0]["function"]["name"] == "get_weather"
    first = {}
    for tc in calls:   # every fragment names its call; a call's first fragment has its id and name
        first.setdefault(tc["index"], tc)
    assert all(f.get("id") and f["function"].get("name") == "get_weather" for f in first.values())
    assert sorted(first) == [0]
    args = "".join(tc["function"].get("arguments") or "" for tc in calls if tc["index"] == 0)
    assert "city" in json.loads(args)
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_named_tool_choice_and_bad_choices(client):
    other = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    r = client.post("/v1/chat/completions", json=chat("Weather in Rome?", tools=[WEATHER, other],
                                                       tool_choice={"type": "function", "function": {"name": "get_time"}}))
    (call,) = r.get_json()["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_time"
    for bad in ({"type": "function", "function": {"name": "nope"}}, "sometimes", 3):
        r = client.post("/v1/chat/completions", json=chat(tools=[WEATHER], tool_choice=bad))
        assert r.status_code == 400 and r.get_json()["error"]["param"] == "tool_choice"
    r = client.post("/v1/chat/completions", json=chat(tool_choice="required"))
    assert r.status_code == 400
