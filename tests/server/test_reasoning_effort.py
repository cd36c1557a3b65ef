"""Reasoning levels reach the chat template as `reasoning_effort` (GPT-OSS's "Reasoning: low"):
OpenAI's reasoning_effort and Ollama's think levels."""
import pytest

from tensorsharp.chat.template import ChatTemplate

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def rendered(monkeypatch):
    """The (enable_thinking, reasoning_effort) of each template render."""
    seen = []
    plain = ChatTemplate.render

    def spy(self, messages, *args, **kwargs):
        seen.append((kwargs.get("enable_thinking"), kwargs.get("reasoning_effort")))
        return plain(self, messages, *args, **kwargs)

    monkeypatch.setattr(ChatTemplate, "render", spy)
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
