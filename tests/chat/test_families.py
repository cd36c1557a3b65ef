"""Chat formats resolved from the real models' metadata and templates, and from template snippets."""
import json
from pathlib import Path

import pytest

from tensorsharp.chat.families import ChatFormat
from tensorsharp.chat.output import chat_format
from tensorsharp.chat.template import GEMMA_TEMPLATE, ChatTemplate
from tensorsharp.chat.tool_parsers import UnknownToolFormat
from tensorsharp.errors import TensorSharpError
from tensorsharp.gguf import GGUFFile
from tensorsharp.testing.models import model_path
from tensorsharp.testing.templates import PHI4_MINI

REFDATA = Path(__file__).resolve().parents[1] / "data"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]

# model name -> (family, template lays out tools, teaching system prompt)
REAL = {
    "smollm2-135m": ("generic", False, True),
    "gemma3-270m": ("gemma", False, True),
    "qwen2.5-coder-0.5b": ("hermes", True, False),
}


@pytest.mark.parametrize("name", REAL)
def test_real_models(name):
    md = GGUFFile(model_path(name)).metadata
    fmt = chat_format(md, md.get("tokenizer.chat_template"))
    family, renders, teaches = REAL[name]
    assert isinstance(fmt, ChatFormat)
    assert (fmt.tool_family, fmt.template_renders_tools) == (family, renders)
    assert (fmt.system_prompt_for_tools(TOOLS) is not None) == teaches
    assert fmt.system_prompt_for_tools(None) is None and fmt.system_prompt_for_tools([]) is None
    assert fmt.supports_tools and not fmt.supports_thinking
    assert fmt.reasoning_markers == (("<think>", "</think>"),)


@pytest.mark.llama_cpp
def test_refdata_templates_and_the_wire_syntax_they_teach():
    sources = {s["model"]: s["tokenizer_chat_template"]
               for s in json.loads((REFDATA / "chat_template_sources.json").read_text())}
    arch = {"SmolLM2-135M-Instruct.Q4_1.gguf": "llama", "gemma-3-270m-q4_k_m.gguf": "gemma3",
            "qwen2.5-coder-0.5b-instruct.gguf": "qwen2"}
    families = {m: chat_format({"general.architecture": arch[m]}, s).tool_family for m, s in sources.items()}
    assert families == {"SmolLM2-135M-Instruct.Q4_1.gguf": "generic", "gemma-3-270m-q4_k_m.gguf": "gemma",
                        "qwen2.5-coder-0.5b-instruct.gguf": "hermes"}
    # The prompt Qwen's own template renders teaches the syntax a tool-call constraint produces.
    cases = json.loads((REFDATA / "chat_templates.json").read_text())
    prompt = next(c["prompt"] for c in cases if c["case"] == "tools_user")
    fmt = chat_format({"general.architecture": "qwen2"}, sources["qwen2.5-coder-0.5b-instruct.gguf"])
    assert (fmt.call_prefix, fmt.call_suffix) == ("<tool_call>\n", "\n</tool_call>")
    assert fmt.call_prefix + '{"name": <function-name>, "' + fmt.arguments_key in prompt
    assert fmt.call_suffix in prompt and not fmt.calls_as_array


def _calls(fmt, text):
    parser = fmt.make_parser(TOOLS)
    parser.feed(text)
    parser.finish()
    return [c["function"]["name"] for c in parser.tool_calls]


HERMES_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>'


def test_gemma_learns_hermes_from_a_system_prompt_in_its_turn_format():
    fmt = chat_format(GGUFFile(model_path("gemma3-270m")).metadata, None)
    prompt = ChatTemplate(GEMMA_TEMPLATE, builtin=True).render(
        [{"role": "system", "content": fmt.system_prompt_for_tools(TOOLS)},
         {"role": "user", "content": "Weather in Paris?"}])
    assert prompt.startswith("<start_of_turn>user\n") and '"name": "get_weather"' in prompt
    assert "<tool_call>" in prompt and prompt.endswith("<start_of_turn>model\n")
    assert _calls(fmt, HERMES_CALL) == ["get_weather"]


@pytest.mark.parametrize("source, family", [
    ("{{ '<|start_header_id|>' + m.role + '<|end_header_id|>' }}", "llama3"),
    ("{% if tools %}<|python_tag|>{% endif %}", "llama3"),
    ("[AVAILABLE_TOOLS]{{ tools }}[/AVAILABLE_TOOLS][TOOL_CALLS]", "mistral"),
    ("{% if tools %}respond only with <|tool_call|> followed by a JSON list{% endif %}", "granite"),
    ("<|im_start|>{% for t in tools %}<tool_call>{% endfor %}", "hermes"),
    ("{{ messages }}", "generic"),
    ("", "generic"),
])
def test_family_from_template_text(source, family):
    assert chat_format({"general.architecture": "llama"}, source).tool_family == family


def test_gemma_whose_template_renders_tools_is_not_taught():
    fmt = chat_format({"general.architecture": "gemma3"}, "{% for t in tools %}{{ t | tojson }}{% endfor %}")
    assert fmt.tool_family == "generic" and fmt.system_prompt_for_tools(TOOLS) is None


def test_wire_syntax_per_family():
    syntax = {name: (f.call_prefix, f.call_suffix, f.arguments_key, f.calls_as_array)
              for name, f in ((n, chat_format({}, "", n)) for n in ("hermes", "llama3", "mistral", "granite", "gemma", "phi4", "generic"))}
    assert syntax == {
        "hermes": ("<tool_call>\n", "\n</tool_call>", "arguments", False),
        "llama3": ("", "", "parameters", False),
        "mistral": ("[TOOL_CALLS]", "", "arguments", True),
        "granite": ("<|tool_call|>", "", "arguments", True),
        "gemma": ("<tool_call>\n", "\n</tool_call>", "arguments", False),
        "phi4": ("<|tool_call|>", "<|/tool_call|>", "arguments", True),
        "generic": ("", "", "arguments", False),
    }


def test_where_calls_open_per_family():
    # What an auto reply's lazy constraint waits for: a marker anywhere, a bare call object opening
    # the answer, a call object in a fence; each is a place the family's parser reads a call from.
    opens = {name: (f.call_trigger, f.bare_call_start, f.bare_call_openings)
             for name, f in ((n, chat_format({}, "", n)) for n in ("hermes", "llama3", "mistral", "granite", "gemma", "phi4", "generic"))}
    assert opens == {
        "hermes": ("<tool_call>", True, ("```json",)),
        "llama3": ("<|python_tag|>", True, ()),
        "mistral": ("[TOOL_CALLS]", False, ()),
        "granite": ("<|tool_call|>", False, ()),
        "gemma": ("<tool_call>", True, ("```json",)),
        "phi4": ("<|tool_call|>", True, ()),
        "generic": ("", True, ("```json",)),
    }


def test_override_and_unknown_override():
    qwen = "{% for t in tools %}<tool_call>{% endfor %}"
    assert _calls(chat_format({}, qwen), HERMES_CALL) == ["get_weather"]
    fmt = chat_format({}, qwen, tool_format="mistral")
    assert fmt.tool_family == "mistral" and _calls(fmt, HERMES_CALL) == []
    assert _calls(fmt, '[TOOL_CALLS][{"name": "get_weather", "arguments": {}}]') == ["get_weather"]
    with pytest.raises(UnknownToolFormat, match="'hermez'.*hermes") as e:
        chat_format({}, qwen, tool_format="hermez")
    assert isinstance(e.value, TensorSharpError)


def test_no_tools_offered_means_no_calls_are_looked_for():
    fmt = chat_format({}, "<tool_call>")
    parser = fmt.make_parser(None)
    parser.feed(HERMES_CALL)
    parser.finish()
    assert parser.tool_calls == [] and parser.content == HERMES_CALL


@pytest.mark.parametrize("source, thinking, markers", [
    ("{% if enable_thinking is false %}<think>\n\n</think>{% endif %}", True, (("<think>", "</think>"),)),
    ("{{ '<think>\\n' }}", True, (("<think>", "</think>"),)),
    ("[THINK]{{ m.thinking }}[/THINK][TOOL_CALLS]", True, (("[THINK]", "[/THINK]"),)),
    ("{% if enable_thinking %}{% endif %}", True, (("<think>", "</think>"),)),
    ("<|im_start|>", False, (("<think>", "</think>"),)),
])
def test_thinking_support_and_markers(source, thinking, markers):
    fmt = chat_format({}, source)
    assert (fmt.supports_thinking, fmt.reasoning_markers) == (thinking, markers)


@pytest.mark.parametrize("tail, inside", [
    ("<|im_start|>assistant\n<think>\n", True),
    ("<|im_start|>assistant\n<think>", True),
    ("<|im_start|>assistant\n<think>\n\n</think>\n\n", False),
    ("<|im_start|>assistant\n", False),
    ("", False),
])
def test_generation_starts_inside_thinking_when_the_prompt_opened_it(tail, inside):
    fmt = chat_format({}, "<think>")
    assert fmt.starts_in_thinking(tail) == inside
    parser = fmt.make_parser(prompt=tail)
    parser.feed("plan</think>answer")
    parser.finish()
    assert (parser.thinking, parser.content) == (("plan", "answer") if inside else ("", "plan</think>answer"))


LOOP = [
    {"role": "user", "content": "Weather in Paris and Oslo?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 18}'},
    {"role": "tool", "tool_call_id": "call_2", "content": '{"temp": 9}'},
]


def test_gemma_sees_the_whole_loop_in_its_turn_format():
    fmt = chat_format({"general.architecture": "gemma3"}, None)
    messages = fmt.messages_for_template(LOOP, TOOLS)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    prompt = ChatTemplate(GEMMA_TEMPLATE, builtin=True).render(messages)
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    assert "<start_of_turn>model\n<tool_call>\n" in prompt and call + "<end_of_turn>" in prompt
    assert ('<start_of_turn>user\n<tool_response>\n{"temp": 18}\n</tool_response>\n'
            '<tool_response>\n{"temp": 9}\n</tool_response><end_of_turn>\n<start_of_turn>model\n') in prompt
    # What the model is shown is what its parser reads back.
    assert _calls(fmt, messages[2]["content"]) == ["get_weather", "get_weather"]


def test_system_message_keeps_its_text_and_gains_the_teaching():
    fmt = chat_format({}, "{{ messages }}")
    messages = fmt.messages_for_template([{"role": "system", "content": "Be brief."}, *LOOP[:1]], TOOLS)
    assert messages[0]["content"].startswith("Be brief.\n\n") and "get_weather" in messages[0]["content"]
    assert messages[1] == LOOP[0]


def test_templates_that_render_tools_get_the_messages_unchanged():
    fmt = chat_format({}, "{% for t in tools %}<tool_call>{% endfor %}")
    assert fmt.messages_for_template(LOOP, TOOLS) is LOOP
    assert chat_format({}, "").messages_for_template(LOOP, None) is LOOP


def test_mistral_writes_parallel_calls_as_one_array():
    fmt = chat_format({}, "", tool_format="mistral")
    written = fmt.messages_for_template(LOOP, TOOLS)[2]["content"]
    assert written == ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, '
                       '{"name": "get_weather", "arguments": {"city": "Oslo"}}]')
    assert _calls(fmt, written) == ["get_weather", "get_weather"]


def test_phi4_mini_sees_the_tools_through_its_system_message():
    fmt = chat_format({"general.architecture": "phi3"}, PHI4_MINI)
    assert (fmt.tool_family, fmt.template_renders_tools, fmt.message_tools) == ("phi4", True, True)
    tools = '<|tool|>[{"name": "get_weather", "parameters": {"type": "object"}}]<|/tool|><|end|>'
    prompt = fmt.render(ChatTemplate(PHI4_MINI), LOOP[:1], TOOLS)
    assert prompt.startswith("<|system|>You are a helpful assistant with some tools." + tools + "<|user|>")
    prompt = fmt.render(ChatTemplate(PHI4_MINI), [{"role": "system", "content": "Be brief."}, *LOOP[:1]], TOOLS)
    assert prompt.startswith("<|system|>Be brief." + tools + "<|user|>")
    assert fmt.render(ChatTemplate(PHI4_MINI), LOOP[:1], None).startswith("<|user|>")


def test_phi4_mini_shows_earlier_calls_in_their_turn():
    fmt = chat_format({"general.architecture": "phi3"}, PHI4_MINI)
    prompt = fmt.render(ChatTemplate(PHI4_MINI), LOOP, TOOLS)
    written = ('<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
               '{"name": "get_weather", "arguments": {"city": "Oslo"}}]<|/tool_call|>')
    assert "<|assistant|>" + written + "<|end|>" in prompt
    assert _calls(fmt, written) == ["get_weather", "get_weather"]


REFUSES_SYSTEM = ("{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
                  "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}")


@pytest.mark.parametrize("source, takes_it", [
    (REFUSES_SYSTEM, False),
    ("{% for m in messages %}{% if m.role != 'system' %}{{ m.content }}{% endif %}{% endfor %}", False),  # drops it
    ("{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}", True),
    (GEMMA_TEMPLATE, True),   # folds it itself
    ("{{ raise_exception('needs a variable') }}", True),   # fails either way: nothing learned
    ("{% generation %}", True),                           # does not parse (the model load says so)
])
def test_system_role_is_probed(source, takes_it):
    assert chat_format({}, source).system_role == takes_it


def test_system_text_opens_the_first_user_turn_where_the_template_refuses_the_role():
    fmt, template = chat_format({}, REFUSES_SYSTEM), ChatTemplate(REFUSES_SYSTEM)
    messages = [{"role": "system", "content": "S1"}, {"role": "assistant", "content": "A"},
                {"role": "system", "content": "S2"}, {"role": "user", "content": "U"}]
    assert fmt.render(template, messages) == "[assistant]A[user]S1\n\nS2\n\nU"
    assert fmt.render(template, [{"role": "system", "content": "S"}]) == "[user]S"


def test_gpt_oss_template_speaks_harmony():
    """GPT-OSS's template (llama.cpp's copy of the real one): harmony, whose parser reads the whole
    reply, so its markers are rendered even without tools and no JSON call grammar applies."""
    from tensorsharp.testing.llama_convert import chat_template

    fmt = chat_format({"general.architecture": "gpt-oss"}, chat_template("openai-gpt-oss-120b"))
    assert fmt.tool_family == "harmony" and fmt.template_renders_tools and fmt.supports_thinking
    assert not fmt.call_grammar
    assert {"<|channel|>", "<|message|>", "<|end|>", "<|call|>"} <= set(fmt.parser_markers(tools=False))
    parser = fmt.make_parser(tools=None)
    parser.feed("<|channel|>analysis<|message|>Hmm.<|end|><|start|>assistant<|channel|>final<|message|>Hi.")
    parser.finish()
    assert (parser.thinking, parser.content, parser.tool_calls) == ("Hmm.", "Hi.", [])
