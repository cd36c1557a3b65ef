"""Every dialect renders thinking and tool-call deltas from a request's reply parser.

The parser is plugged in at generation.new_reply; a scripted one stands in for a chat format's."""
import json

import pytest

from tensorsharp.server import generation
from tensorsharp.chat.output import ContentDelta
from tensorsharp.server.reply import Reply
from tensorsharp.testing.scripted import CALL, ScriptedParser
from tensorsharp.testing.server import ndjson_lines, sse_events

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setattr(generation, "new_reply", lambda served, job, prompt: Reply(ScriptedParser()))


def test_plain_reply_and_finish_reason():
    r = Reply()
    assert r.feed("ab") == [ContentDelta("ab")] and r.feed("") == [] and r.content == "ab"
    assert r.finish_reason("stop") == "stop"
    s = Reply(ScriptedParser())
    s.finish()
    assert s.finish_reason("stop") == "tool_calls" and s.finish_reason("length") == "length"


def test_openai(client, scripted):
    body = {"model": FILE, "messages": [{"role": "user", "content": "Weather?"}], "max_tokens": 4}
    r = client.post("/v1/chat/completions", json=body).get_json()
    msg = r["choices"][0]["message"]
    assert msg["tool_calls"] == [CALL] and msg["reasoning_content"] and r["choices"][0]["finish_reason"] == "length"
    events = sse_events(client.post("/v1/chat/completions", json={**body, "stream": True}).data)[:-1]
    deltas = [e["choices"][0]["delta"] for e in events]
    assert any("reasoning_content" in d for d in deltas)
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["id"] == "call_1" and calls[0]["function"]["name"] == "get_weather"
    assert "".join(c["function"]["arguments"] for c in calls) == CALL["function"]["arguments"]


def test_ollama(client, scripted):
    body = {"model": FILE, "messages": [{"role": "user", "content": "Weather?"}], "stream": False,
            "options": {"num_predict": 4}}
    msg = client.post("/api/chat", json=body).get_json()["message"]
    assert msg["thinking"] and msg["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    lines = ndjson_lines(client.post("/api/chat", json={**body, "stream": True}).data)
    assert any(line["message"].get("thinking") for line in lines)
    # As Ollama: the calls on a line of their own before the last, which has none.
    assert not lines[-2]["done"] and lines[-2]["message"]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert lines[-1]["done"] and "tool_calls" not in lines[-1]["message"]


def test_webui(client, scripted):
    events = sse_events(client.post("/api/chat", json={"messages": [{"role": "user", "content": "Weather?"}],
                                                       "maxTokens": 4}).data)
    assert any("thinking" in e for e in events)
    assert {"tool_calls": [CALL]} in events
    assert events[-1]["done"] and json.dumps(events[-1])


# GPT-OSS replies as harmony text, cut into the pieces a model streams.
HARMONY_ANSWER = ["<|channel|>analysis<|message|>The user", " wants weather.<|end|><|start|>assistant",
                  "<|channel|>final<|message|>Sunny", " in Paris.<|return|>"]
HARMONY_CALL = ["<|channel|>analysis<|message|>Need a tool.<|end|><|start|>assistant<|channel|>commentary",
                " to=functions.get_weather <|constrain|>json<|message|>{\"city\":", ' "Paris"}<|call|>']
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


class Replayed:
    """The harmony chat format's own parser (resolved from a template that speaks it) fed a canned
    reply, one piece per generated token whatever the model wrote; finish() feeds what is left."""

    def __init__(self, pieces):
        from tensorsharp.chat.output import chat_format

        self.parser = chat_format({}, "{{ '<|start|>assistant<|channel|>final<|message|>' }}").make_parser(tools=TOOLS)
        self.pieces = iter(pieces)

    def __getattr__(self, name):  # content, thinking, tool_calls
        return getattr(self.parser, name)

    def feed(self, text):
        return self.parser.feed(next(self.pieces, ""))

    def finish(self, cut_off=False):
        return self.parser.feed("".join(self.pieces)) + self.parser.finish(cut_off)


@pytest.fixture
def harmony(monkeypatch):
    def use(pieces):
        monkeypatch.setattr(generation, "new_reply", lambda served, job, prompt: Reply(Replayed(pieces)))
    return use


def test_harmony_streams_in_openai(client, harmony):
    body = {"model": FILE, "messages": [{"role": "user", "content": "Weather?"}], "max_tokens": 3, "stream": True}
    harmony(HARMONY_ANSWER)
    deltas = [e["choices"][0]["delta"] for e in sse_events(client.post("/v1/chat/completions", json=body).data)[:-1]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "The user wants weather."
    assert "".join(d.get("content") or "" for d in deltas) == "Sunny in Paris."
    harmony(HARMONY_CALL)
    events = sse_events(client.post("/v1/chat/completions", json=body).data)[:-1]
    calls = [c for e in events for c in e["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "get_weather"
    assert "".join(c["function"]["arguments"] for c in calls) == '{"city": "Paris"}'


def test_harmony_streams_in_ollama(client, harmony):
    body = {"model": FILE, "messages": [{"role": "user", "content": "Weather?"}], "options": {"num_predict": 3}}
    harmony(HARMONY_ANSWER)
    lines = ndjson_lines(client.post("/api/chat", json=body).data)
    assert "".join(line["message"].get("thinking", "") for line in lines) == "The user wants weather."
    assert "".join(line["message"]["content"] for line in lines) == "Sunny in Paris."
    harmony(HARMONY_CALL)
    lines = ndjson_lines(client.post("/api/chat", json=body).data)
    assert [c for line in lines for c in line["message"].get("tool_calls", [])] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]


def test_harmony_streams_in_webui(client, harmony):
    body = {"messages": [{"role": "user", "content": "Weather?"}], "maxTokens": 3}
    harmony(HARMONY_ANSWER)
    events = sse_events(client.post("/api/chat", json=body).data)
    assert "".join(e.get("thinking", "") for e in events) == "The user wants weather."
    assert "".join(e.get("token", "") for e in events) == "Sunny in Paris."
    harmony(HARMONY_CALL)
    events = sse_events(client.post("/api/chat", json=body).data)
    assert [c["function"] for e in events for c in e.get("tool_calls", [])] == [
        {"name": "get_weather", "arguments": '{"city": "Paris"}'}]
