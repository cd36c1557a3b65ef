"""Tool-call markers that a vocabulary holds as control tokens (Mistral's [TOOL_CALLS]) reach the
parser: the decoder leaves control tokens out of the text unless told to show them."""
import pytest

TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST]{{ m.content }}[/INST]"
            "{% elif m.role == 'assistant' %}{% if m.tool_calls %}[TOOL_CALLS]{{ m.tool_calls | tojson }}"
            "{% else %}{{ m.content }}{% endif %}{{ eos_token }}{% endif %}{% endfor %}")
CLOCK = {"type": "function", "function": {"name": "get_time", "description": "The current time.",
                                          "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers", minversion="5")
    import gguf

    from tensorsharp.server.app import create_app
    from tensorsharp.testing import tiny_gguf

    added = {t: gguf.TokenType.CONTROL for t in ("[INST]", "[/INST]", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]")}
    directory = tmp_path_factory.mktemp("mistral")
    # The template drops system messages, so the taught tool prompt joins the user turn: 512 positions.
    config = tiny_gguf.tiny_config("llama", max_position_embeddings=512)
    path = tiny_gguf.write_gguf(tiny_gguf.random_model(config, seed=5),
                                directory / "tiny-mistral.gguf", chat_template=TEMPLATE, added_tokens=added)
    app = create_app(str(path), n_ctx=512, n_threads=1, parallel=1, cache_slots=1,
                     upload_dir=directory / "uploads")
    yield app.test_client()
    app.extensions["tensorsharp"].served.close()


def test_marker_is_a_control_token_and_shown_only_with_tools(client):
    served = client.application.extensions["tensorsharp"].served
    assert served.chat.tool_family == "mistral"
    marker = served.tokenizer.token_id("[TOOL_CALLS]")
    assert served.tokenizer.is_control(marker)
    without, with_tools = served.shown_tokens
    assert marker not in without and marker in with_tools


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_time"}}])
def test_forced_call_after_control_marker_is_a_tool_call(client, tool_choice):
    # The grammar makes the model emit the [TOOL_CALLS] token, then the JSON array; had the
    # decoder dropped the token, the parser would have seen bare JSON and returned it as content.
    r = client.post("/v1/chat/completions", json={
        "model": "tiny-mistral", "messages": [{"role": "user", "content": "what time is it"}],
        "tools": [CLOCK], "tool_choice": tool_choice, "max_tokens": 120, "temperature": 0})
    choice = r.get_json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_time" and call["function"]["arguments"] == "{}"

