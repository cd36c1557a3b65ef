"""Chat templates against llama.cpp's renderings (tests/data/chat_templates.json) and the sandbox."""
import json
from pathlib import Path

import pytest

from tensorsharp.chat.template import CHATML_TEMPLATE, GEMMA_TEMPLATE, ChatTemplate, TemplateError

REFDATA = Path(__file__).resolve().parents[1] / "data"
CASES = json.loads((REFDATA / "chat_templates.json").read_text())
SOURCES = {s["model"]: s["tokenizer_chat_template"]
           for s in json.loads((REFDATA / "chat_template_sources.json").read_text())}


def _template_for(case):
    if case["case"].endswith("__builtin_gemma"):
        return ChatTemplate(GEMMA_TEMPLATE, builtin=True)
    source = SOURCES[case["model"]]
    # llama.cpp --jinja falls back to ChatML rendered through its Jinja path.
    return ChatTemplate(source or CHATML_TEMPLATE)


@pytest.mark.llama_cpp
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['model'][:12]}-{c['case']}")
def test_renders_like_llama_cpp(case):
    req = case["request"]
    got = _template_for(case).render(req["messages"], req.get("add_generation_prompt", True),
                                     tools=req.get("tools"))
    assert got == case["prompt"]


def test_raise_exception_is_a_template_error():
    t = ChatTemplate("{{ raise_exception('no system role') }}")
    with pytest.raises(TemplateError, match="no system role"):
        t.render([])


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages.append(1) }}",
    "{{ cycler.__init__.__globals__ }}",
])
def test_sandbox_refuses_escapes(source):
    with pytest.raises(TemplateError):
        ChatTemplate(source).render([{"role": "user", "content": "x"}])


def test_tojson_keeps_non_ascii():
    assert ChatTemplate("{{ x | tojson }}")._template.render(x={"k": "é"}) == '{"k": "é"}'


def test_hf_generation_tag_keeps_what_it_wraps():
    # HF marks the assistant's text for training masks with it; a template using it must load.
    source = ("{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}"
              "{% endgeneration %}{% else %}[{{ m.content }}]{% endif %}{% endfor %}")
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert ChatTemplate(source).render(messages) == "[a]b"


HARMONY_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "required": ["location"], "properties": {
        "location": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
        "days": {"type": "array", "items": {"type": "integer"}}}}}}]
_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"location": "Paris"}}}
HARMONY_CASES = {
    "system-and-user": ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], None, None),
    "effort-high": ([{"role": "user", "content": "Hi"}], None, "high"),
    "tool-loop": ([{"role": "user", "content": "Weather in Paris?"},
                   {"role": "assistant", "content": "", "tool_calls": [_CALL]},
                   {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
                   {"role": "assistant", "content": "21 degrees."},
                   {"role": "user", "content": "And tomorrow?"}], HARMONY_TOOLS, "low"),
    "pending-call": ([{"role": "user", "content": "Weather in Paris?"},
                      {"role": "assistant", "content": "Calling the tool.", "tool_calls": [_CALL]},
                      {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}], HARMONY_TOOLS, None),
}


@pytest.mark.hf
@pytest.mark.parametrize("case", HARMONY_CASES)
def test_gpt_oss_harmony_renders_like_hf(case):
    """GPT-OSS's template (llama.cpp's copy of the real one) renders as HF's apply_chat_template does:
    tools as a TypeScript namespace, reasoning effort, calls and results. Clients send arguments as
    JSON strings; HF is given the objects the template expects."""
    chat_template_utils = pytest.importorskip("transformers.utils.chat_template_utils")
    from tensorsharp.testing.llama_convert import chat_template

    source = chat_template("openai-gpt-oss-120b")
    messages, tools, effort = HARMONY_CASES[case]
    extra = {"reasoning_effort": effort} if effort else {}
    want = chat_template_utils.render_jinja_template(conversations=[messages], tools=tools, chat_template=source,
                                                     add_generation_prompt=True, **extra)[0][0]
    sent = [{**m, "tool_calls": [{**c, "function": {**c["function"], "arguments": json.dumps(c["function"]["arguments"])}}
                                 for c in m["tool_calls"]]} if "tool_calls" in m else m for m in messages]
    got = ChatTemplate(source).render(sent, tools=tools, reasoning_effort=effort)
    assert got == want
    assert f"Reasoning: {effort or 'medium'}" in got
