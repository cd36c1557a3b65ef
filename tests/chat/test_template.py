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
