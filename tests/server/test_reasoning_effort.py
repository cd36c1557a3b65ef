"""Reasoning levels reach the chat template as `reasoning_effort` (GPT-OSS's "Reasoning: low"):
OpenAI's reasoning_effort and Ollama's think levels."""
import pytest

from tensorsharp.chat.families import ChatFormat
from tensorsharp.server.model import ServedModel

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def rendered(monkeypatch):
    """The (think, reasoning_effort) of each chat render (the format passes them to the template
    under the variables it reads)."""
    seen = []
    plain = ChatFormat.render

    def spy(self, template, messages, tools=None, think=None, reasoning_effort=None):
        seen.append((think, reasoning_effort))
        return plain(self, template, messages, tools, think, reasoning_effort)

    monkeypatch.setattr(ChatFormat, "render", spy)
    # SmolLM2 cannot think, and a think request to such a model is a 400 (as Ollama's).
    monkeypatch.setattr(ServedModel, "supports_thinking", property(lambda self: True))
    return seen


@pytest.mark.parametrize("effort, want", [("low", (True, "low")), ("high", (True, "high")), ("none", (False, None)),
                                          (None, (None, None))])
def test_openai_reasoning_effort(client, rendered, effort, want):
    body = {"model": FILE, "messages": MESSAGES, "max_tokens": 1}
    if effort:
        body["reasoning_effort"] = effort
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert rendered == [want]


def test_openai_unknown_effort_is_a_400(client):
    r = client.post("/v1/chat/completions", json={"model": FILE, "messages": MESSAGES, "reasoning_effort": "max"})
    assert r.status_code == 400 and r.get_json()["error"]["param"] == "reasoning_effort"


@pytest.mark.parametrize("think, want", [("medium", (True, "medium")), (True, (True, None)), (False, (False, None))])
def test_ollama_think_levels(client, rendered, think, want):
    body = {"model": FILE, "messages": MESSAGES, "think": think, "stream": False, "options": {"num_predict": 1}}
    assert client.post("/api/chat", json=body).status_code == 200
    assert rendered == [want]
