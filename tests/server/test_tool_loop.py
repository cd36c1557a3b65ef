"""The seed's get_weather tool loop on the real Qwen2.5-Coder model, through OpenAI and Ollama."""
import json

import pytest

from tensorsharp.testing.server import ndjson_lines, sse_events

QWEN = "qwen2.5-coder-0.5b"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "units": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city"]}}}
SYSTEM = {"role": "system", "content": "You are a helpful assistant. When a tool result arrives, answer the "
                                      "user's question in one plain sentence."}
ASK = {"role": "user", "content": "What is the weather in Paris?"}
RESULT = '{"city": "Paris", "temperature": 18, "units": "c", "sky": "sunny"}'


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    from tensorsharp.server.app import create_app
    app = create_app(QWEN, n_ctx=1024, n_threads=1, parallel=1, cache_slots=1,
                     upload_dir=tmp_path_factory.mktemp("uploads"))
    yield app.test_client()
    app.extensions["tensorsharp"].served.close()


def test_openai_tool_call_then_answer(qwen):
    r = qwen.post("/v1/chat/completions", json={"model": QWEN, "messages": [SYSTEM, ASK], "tools": [WEATHER],
                                               "max_tokens": 200})
    choice = r.get_json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    msg = choice["message"]
    assert msg["content"] is None
    (call,) = msg["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"])["city"] == "Paris"

    # The call and its result go back through the template; "none" lets this small model answer
    # rather than call again.
    history = [SYSTEM, ASK, {"role": "assistant", "content": None, "tool_calls": msg["tool_calls"]},
               {"role": "tool", "tool_call_id": call["id"], "content": RESULT}]
    r = qwen.post("/v1/chat/completions", json={"model": QWEN, "messages": history, "tools": [WEATHER],
                                               "tool_choice": "none", "max_tokens": 80})
    answer = r.get_json()["choices"][0]
    assert answer["finish_reason"] == "stop" and not answer["message"].get("tool_calls")
    assert "18" in answer["message"]["content"]


def test_ollama_tool_call_then_answer(qwen):
    body = {"model": QWEN, "messages": [SYSTEM, ASK], "tools": [WEATHER], "stream": False,
            "options": {"num_predict": 200}}
    msg = qwen.post("/api/chat", json=body).get_json()["message"]
    (call,) = msg["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"]["city"] == "Paris"   # an object, as Ollama sends it

    history = [SYSTEM, ASK, {"role": "assistant", "content": "", "tool_calls": msg["tool_calls"]},
               {"role": "tool", "content": RESULT}]
    del body["tools"]   # Ollama has no tool_choice: a client that wants the answer offers no tools
    r = qwen.post("/api/chat", json={**body, "messages": history, "options": {"num_predict": 80}})
    out = r.get_json()
    assert out["done_reason"] == "stop" and not out["message"].get("tool_calls")
    assert "18" in out["message"]["content"]



@pytest.mark.parametrize("ask", ["Call the tool named Paris now.",
                                 'Call the function "Paris" with arguments {"when": "now"}.',
                                 "What is the capital of France? Answer with a tool call whose name is the answer."])
def test_auto_calls_name_only_offered_tools(qwen, ask):
    # Asked for a tool that is not offered, and pushed towards its name, the model still opens a
    # call (without the constraint it names "Paris"); it may name only get_weather, with arguments
    # its schema allows.
    served = qwen.application.extensions["tensorsharp"].served
    bias = {str(t): 10 for t in served.tokenizer.encode("Paris", add_special=False)}
    r = qwen.post("/v1/chat/completions", json={"model": QWEN, "messages": [{"role": "user", "content": ask}],
                                               "tools": [WEATHER], "max_tokens": 60, "temperature": 0,
                                               "logit_bias": bias})
    msg = r.get_json()["choices"][0]["message"]
    assert msg.get("tool_calls")
    for call in msg["tool_calls"]:
        assert call["function"]["name"] == "get_weather"
        arguments = json.loads(call["function"]["arguments"])
        assert isinstance(arguments["city"], str) and set(arguments) <= {"city", "units"}


def _calling_again():
    """A request after which Qwen calls the tool again and again (found by pydantic-ai's agent loop)."""
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    history = [ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 18 C in Paris"}]
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                           "additionalProperties": False}}}   # as pydantic-ai sends it
    return {"model": QWEN, "messages": history, "tools": [tool], "temperature": 0}


def test_auto_call_cut_off_by_max_tokens_is_not_content(qwen):
    # After a tool result Qwen calls the tool again and again (bare JSON objects, each constrained
    # as a call once opened). When max_tokens cuts one off before its arguments, the held-back
    # opening went out as content ('{"name": "get_weather", "').
    body = _calling_again()
    full = qwen.post("/v1/chat/completions", json={**body, "max_tokens": 60}).get_json()["choices"][0]
    assert len(full["message"]["tool_calls"]) > 1, full   # the repeated calls this test is about
    for n in range(18, 24):   # the second call's opening, before its arguments key
        choice = qwen.post("/v1/chat/completions", json={**body, "max_tokens": n}).get_json()["choices"][0]
        assert choice["finish_reason"] == "length"
        assert '{"name"' not in (choice["message"]["content"] or ""), (n, choice["message"])
        events = sse_events(qwen.post("/v1/chat/completions", json={**body, "max_tokens": n, "stream": True}).data)
        streamed = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])
        assert '{"name"' not in streamed, (n, streamed)


def test_ollama_streams_calls_on_a_line_before_the_last(qwen):
    body = {"model": QWEN, "messages": [SYSTEM, ASK], "tools": [WEATHER], "options": {"num_predict": 200}}
    lines = ndjson_lines(qwen.post("/api/chat", json=body).data)
    with_calls = [i for i, line in enumerate(lines) if line["message"].get("tool_calls")]
    assert len(with_calls) == 1 and not lines[with_calls[0]]["done"]   # as Ollama sends them
    (call,) = lines[with_calls[0]]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and call["function"]["arguments"]["city"] == "Paris"
    assert lines[-1]["done"] and "tool_calls" not in lines[-1]["message"]


def test_a_reply_cut_mid_call_after_a_tool_result_has_no_json_in_content(qwen):
    # After the result, this model calls the tool again; cut off mid-call it left '{"name' as content.
    first = qwen.post("/v1/chat/completions", json={"model": QWEN, "messages": [SYSTEM, ASK], "tools": [WEATHER],
                                                    "max_tokens": 100}).get_json()["choices"][0]["message"]
    history = [SYSTEM, ASK, {"role": "assistant", "content": None, "tool_calls": first["tool_calls"]},
               {"role": "tool", "tool_call_id": first["tool_calls"][0]["id"], "content": RESULT}]
    for max_tokens in (10, 20):
        openai = qwen.post("/v1/chat/completions", json={"model": QWEN, "messages": history, "tools": [WEATHER],
                                                         "max_tokens": max_tokens}).get_json()["choices"][0]
        ollama = qwen.post("/api/chat", json={"model": QWEN, "messages": history, "tools": [WEATHER], "stream": False,
                                              "options": {"num_predict": max_tokens}}).get_json()
        assert openai["finish_reason"] == ollama["done_reason"] == "length"
        for message in (openai["message"], ollama["message"]):
            assert '{"' not in (message["content"] or "")
            assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather"]


def test_auto_reply_without_parallel_calls_ends_with_its_first_call(qwen):
    # As llama.cpp's lazy grammar: free text, at most one call, then the end of the output.
    body = {**_calling_again(), "max_tokens": 60}
    several = qwen.post("/v1/chat/completions", json=body).get_json()["choices"][0]
    assert len(several["message"]["tool_calls"]) > 1
    for stream in (False, True):
        r = qwen.post("/v1/chat/completions", json={**body, "parallel_tool_calls": False, "stream": stream})
        if stream:
            deltas = [e["choices"][0] for e in sse_events(r.data)[:-1] if e["choices"]]
            finish = deltas[-1]["finish_reason"]
            calls = {c["index"] for d in deltas for c in d["delta"].get("tool_calls") or []}
        else:
            choice = r.get_json()["choices"][0]
            finish, calls = choice["finish_reason"], set(range(len(choice["message"]["tool_calls"])))
        assert (finish, calls) == ("tool_calls", {0})
