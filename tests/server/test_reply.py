"""Every dialect renders thinking and tool-call deltas from a request's reply parser.

The parser is plugged in at generation.new_reply; a scripted one stands in for a chat format's."""
import json

import pytest

from tensorsharp.server import generation
from tensorsharp.chat.output import ContentDelta, ThinkingDelta, ToolCallDelta
from tensorsharp.server.reply import Reply
from tensorsharp.testing.server import ndjson_lines, sse_events

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


class Scripted:
    """First text piece is thinking, the rest content; finish() adds one tool call in two pieces."""

    def __init__(self):
        self.content, self.thinking, self.tool_calls = "", "", []

    def feed(self, text):
        if not self.thinking:
            self.thinking = text or "."
            return [ThinkingDelta(self.thinking)]
        self.content += text
        return [ContentDelta(text)]

    def finish(self):
        self.tool_calls = [CALL]
        return [ToolCallDelta(0, "call_1", "get_weather", '{"city": '), ToolCallDelta(0, None, None, '"Paris"}')]


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setattr(generation, "new_reply", lambda served, job, prompt: Reply(Scripted()))


def test_plain_reply_and_finish_reason():
    r = Reply()
    assert r.feed("ab") == [ContentDelta("ab")] and r.feed("") == [] and r.content == "ab"
    assert r.finish_reason("stop") == "stop"
    s = Reply(Scripted())
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
