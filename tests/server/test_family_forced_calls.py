"""A forced tool call in each family's own syntax, end to end: a tiny random model carrying the
family's real template (llama.cpp's copy, or testing.templates' where llama.cpp has none) and its markers as control tokens, served; the grammar
makes it write the family's call, which the family's parser reads back as the call."""
import json

import pytest

from tensorsharp.testing import llama_convert, templates

CLOCK = {"type": "function", "function": {"name": "get_time", "description": "The current time.",
                                          "parameters": {"type": "object", "required": ["zone"], "properties": {
                                              "zone": {"type": "string", "enum": ["CET", "UTC"]}}}}}
# template -> (architecture, the vocabulary's control tokens, the tool family the server picks)
FAMILIES = {
    "ibm-granite-granite-3.3-2B-Instruct": ("granite", ("<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>",
                                                        "<|tool_call|>"), "granite"),
    "ibm-granite-granite-4.0": ("granite", ("<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>"), "hermes"),
    "meta-llama-Llama-3.2-3B-Instruct": ("llama", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                                                   "<|python_tag|>"), "llama3"),
    "microsoft-Phi-4-mini-instruct": ("phi3", ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|tool|>",
                                              "<|/tool|>", "<|tool_call|>", "<|/tool_call|>"), "phi4"),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def served(request, tmp_path_factory):
    pytest.importorskip("torch")
    import gguf

    from tensorsharp.server.app import create_app
    from tensorsharp.testing import tiny_gguf

    arch, control, _ = FAMILIES[request.param]
    directory = tmp_path_factory.mktemp("family")
    config = tiny_gguf.tiny_config("llama", max_position_embeddings=2048)
    path = tiny_gguf.write_gguf(tiny_gguf.random_model(config, seed=3), directory / "tiny.gguf",
                                chat_template=templates.BY_NAME.get(request.param) or llama_convert.chat_template(request.param),
                                added_tokens={t: gguf.TokenType.CONTROL for t in control})
    app = create_app(str(path), n_ctx=2048, n_threads=1, parallel=1, cache_slots=1, upload_dir=directory / "uploads")
    yield request.param, app.test_client()
    app.extensions["tensorsharp"].served.close()


def test_forced_call_is_written_and_read_in_the_familys_syntax(served):
    name, client = served
    assert client.application.extensions["tensorsharp"].served.chat.tool_family == FAMILIES[name][2]
    r = client.post("/v1/chat/completions", json={
        "model": "tiny", "messages": [{"role": "user", "content": "what time is it in Oslo"}],
        "tools": [CLOCK], "tool_choice": "required", "max_tokens": 120, "temperature": 0})
    choice = r.get_json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_time"
    assert json.loads(call["function"]["arguments"]) in ({"zone": "CET"}, {"zone": "UTC"})
