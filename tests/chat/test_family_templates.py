"""The real chat templates of the families the engine runs (llama.cpp's copies of them) render, through
the path the server takes, what HF transformers' apply_chat_template renders; and each resolves to
its family's tool-call parser, reasoning markers and thinking switch."""
import json

import pytest

from tensorsharp.chat.families import chat_format
from tensorsharp.chat.template import ChatTemplate
from tensorsharp.testing import llama_convert

pytestmark = pytest.mark.hf
pytest.importorskip("transformers", minversion="5")

BOS, EOS = "<s>", "</s>"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


# template name -> (architecture, tool family, template lays out tools, thinking switch the
# family's model card names (None: no switch), takes a system message)
FAMILIES = {
    "meta-llama-Llama-3.1-8B-Instruct": ("llama", "llama3", True, None, True),
    "meta-llama-Llama-3.2-3B-Instruct": ("llama", "llama3", True, None, True),
    "meta-llama-Llama-3.3-70B-Instruct": ("llama", "llama3", True, None, True),
    "microsoft-Phi-3.5-mini-instruct": ("phi3", "generic", False, None, True),
    "phi-4": ("phi3", "generic", False, None, True),
    "google-gemma-2-2b-it": ("gemma2", "gemma", False, None, False),
    "HuggingFaceTB-SmolLM3-3B": ("smollm3", "hermes", False, "enable_thinking", True),
    "ibm-granite-granite-3.3-2B-Instruct": ("granite", "granite", True, "thinking", True),
    "ibm-granite-granite-4.0": ("granite", "hermes", True, None, True),
    "ibm-granite-granite-4.1": ("granite", "hermes", True, None, True),
}


@pytest.fixture(scope="module")
def hf_tokenizer():
    """A tokenizer that only carries the BOS and EOS texts the templates print."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")),
                                   bos_token=BOS, eos_token=EOS)


def _call(arguments):
    return {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}


def _conversations():
    """name -> (messages as an OpenAI client sends them, tools, think)."""
    user = {"role": "user", "content": "What is the weather in Paris?"}
    system = {"role": "system", "content": "You answer in one sentence."}
    answer = {"role": "assistant", "content": "It is sunny."}
    called = {"role": "assistant", "content": "", "tool_calls": [_call('{"city": "Paris"}')]}
    result = {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny", "temp": 21}'}
    return {
        "plain": ([user], None, None),
        "system": ([system, user], None, None),
        "turns": ([system, user, answer, {"role": "user", "content": "And tomorrow?"}], None, None),
        "tools": ([user], [WEATHER], None),
        "system_tools": ([system, user], [WEATHER], None),
        "call_result": ([user, called, result], [WEATHER], None),
        "call_result_answer": ([user, called, result, answer, {"role": "user", "content": "Thanks"}], [WEATHER], None),
        "think_on": ([user], None, True),
        "think_off": ([system, user], None, False),
    }


CONVERSATIONS = _conversations()


def _as_hf(messages):
    """The same conversation in HF's convention: tool-call arguments as objects."""
    out = []
    for m in messages:
        if m.get("tool_calls"):
            calls = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                     for c in m["tool_calls"]]
            m = {**m, "tool_calls": calls}
        out.append(m)
    return out


def _fold_system_like_gemma3(messages):
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system:
        rest[0]["content"] = "\n\n".join(system) + "\n\n" + rest[0]["content"]
    return rest


def _applicable(name, conversation):
    """Thinking on/off where the family has a switch; tools where the template lays them out (the
    others are taught: test_taught_families_...)."""
    _, _, renders_tools, switch, _ = FAMILIES[name]
    _, tools, think = CONVERSATIONS[conversation]
    return (think is None or switch is not None) and (not tools or renders_tools)


@pytest.mark.parametrize("name, conversation",
                         [(n, c) for n in FAMILIES for c in CONVERSATIONS if _applicable(n, c)])
def test_prompt_equals_hf_apply_chat_template(name, conversation, hf_tokenizer):
    arch, _, _, switch, system_role = FAMILIES[name]
    messages, tools, think = CONVERSATIONS[conversation]
    src = llama_convert.chat_template(name)
    fmt = chat_format({"general.architecture": arch}, src)
    ours = fmt.render(ChatTemplate(src, BOS, EOS), messages, tools, think)

    hf_messages = _as_hf(messages)
    if not system_role:
        # HF refuses the system message as the template does; the server folds it into the first
        # user turn, which is what HF renders of the folded conversation.
        if any(m["role"] == "system" for m in messages):
            with pytest.raises(Exception, match="System role not supported"):
                hf_tokenizer.apply_chat_template(hf_messages, chat_template=src, tokenize=False)
        hf_messages = _fold_system_like_gemma3(hf_messages)
    switches = {switch: think} if think is not None else {}
    theirs = hf_tokenizer.apply_chat_template(hf_messages, tools=tools, chat_template=src, tokenize=False,
                                              add_generation_prompt=True, **switches)
    assert ours == theirs


@pytest.mark.parametrize("name", [n for n, f in FAMILIES.items() if not f[2]])
def test_taught_families_get_the_teaching_prompt_in_the_templates_own_turns(name, hf_tokenizer):
    """A template that lays out no tools renders the teaching prompt and the written-back loop; what
    it renders is HF's rendering of those messages, and the call it shows parses back."""
    arch = FAMILIES[name][0]
    src = llama_convert.chat_template(name)
    fmt = chat_format({"general.architecture": arch}, src)
    messages, tools, _ = CONVERSATIONS["call_result"]
    ours = fmt.render(ChatTemplate(src, BOS, EOS), messages, tools)
    taught = fmt.messages_for_template(messages, tools)
    if not fmt.system_role:
        taught = _fold_system_like_gemma3(taught)
    assert ours == hf_tokenizer.apply_chat_template(taught, chat_template=src, tokenize=False,
                                                    add_generation_prompt=True)
    assert fmt.system_prompt_for_tools(tools) in ours and messages[-1]["content"] in ours
    written = next(m["content"] for m in taught if m["role"] == "assistant")
    assert written in ours
    parser = fmt.make_parser(tools)
    parser.feed(written)
    parser.finish()
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parser.tool_calls] == \
        [("get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("name", FAMILIES)
def test_family_resolution(name):
    arch, family, renders_tools, switch, system_role = FAMILIES[name]
    fmt = chat_format({"general.architecture": arch}, llama_convert.chat_template(name))
    assert (fmt.tool_family, fmt.template_renders_tools, fmt.system_role) == (family, renders_tools, system_role)
    assert fmt.thinking_variables == ((switch,) if switch else ())
    assert fmt.supports_thinking == (switch is not None)
    assert fmt.reasoning_markers == (("<think>", "</think>"),)
    assert fmt.answer_markers == (("<response>", "</response>") if name.startswith("ibm-granite-granite-3") else None)
    assert fmt.supports_tools


_ARGS = '{"city": "Paris"}'
# template name -> a reply in the family's own call syntax, with reasoning where the family has it:
# (generated text, think) -> (content, thinking)
REPLIES = {
    "meta-llama-Llama-3.1-8B-Instruct": ['{"name": "get_weather", "parameters": ' + _ARGS + '}', None, "", ""],
    "meta-llama-Llama-3.2-3B-Instruct": ['<|python_tag|>{"name": "get_weather", "parameters": ' + _ARGS + '}', None,
                                         "", ""],
    "meta-llama-Llama-3.3-70B-Instruct": ['Checking.<|python_tag|>{"name": "get_weather", "parameters": ' + _ARGS + '}',
                                          None, "Checking.", ""],
    "microsoft-Phi-3.5-mini-instruct": ['{"name": "get_weather", "arguments": ' + _ARGS + '}', None, "", ""],
    "phi-4": ['```json\n{"name": "get_weather", "arguments": ' + _ARGS + '}\n```', None, "", ""],
    "google-gemma-2-2b-it": ['<tool_call>\n{"name": "get_weather", "arguments": ' + _ARGS + '}\n</tool_call>', None,
                             "", ""],
    "HuggingFaceTB-SmolLM3-3B": ['<think>\nThe user wants the weather.\n</think>\n<tool_call>\n{"name": "get_weather", '
                                 '"arguments": ' + _ARGS + '}\n</tool_call>', None, "", "The user wants the weather."],
    "ibm-granite-granite-3.3-2B-Instruct": ['<think>I need the weather.</think><|tool_call|>[{"name": "get_weather", '
                                            '"arguments": ' + _ARGS + '}]', True, "", "I need the weather."],
    "ibm-granite-granite-4.0": ['<tool_call>\n{"name": "get_weather", "arguments": ' + _ARGS + '}\n</tool_call>', None,
                                "", ""],
    "ibm-granite-granite-4.1": ['Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": ' + _ARGS
                                + '}\n</tool_call>', None, "Let me look.", ""],
}


@pytest.mark.parametrize("name", FAMILIES)
def test_a_reply_in_the_familys_syntax_parses_whole_and_streamed(name, parse):
    """After the family's real prompt, the family's reply splits into content, thinking and the call,
    fed whole, one character and one token at a time."""
    text, think, content, thinking = REPLIES[name]
    src = llama_convert.chat_template(name)
    fmt = chat_format({"general.architecture": FAMILIES[name][0]}, src)
    prompt = fmt.render(ChatTemplate(src, BOS, EOS), CONVERSATIONS["tools"][0], [WEATHER], think)
    got = parse(lambda: fmt.make_parser([WEATHER], think=think, prompt=prompt), text)
    assert (got.content, got.thinking, got.calls) == (content, thinking, [("get_weather", _ARGS)])


def test_smollm3_no_think_prompt_and_switch_in_the_system_message():
    src = llama_convert.chat_template("HuggingFaceTB-SmolLM3-3B")
    fmt = chat_format({"general.architecture": "smollm3"}, src)
    template = ChatTemplate(src)
    user = {"role": "user", "content": "Hi"}
    off = fmt.render(template, [user], think=False)
    assert "Reasoning Mode: /no_think" in off and off.endswith("<think>\n\n</think>\n")
    assert not fmt.starts_in_thinking(off)
    # "/no_think" in the system message wins over the default, and is taken out of it.
    switched = fmt.render(template, [{"role": "system", "content": "Be brief. /no_think"}, user])
    assert "Reasoning Mode: /no_think" in switched
    assert "Be brief.\n\n" in switched and "Be brief. /no_think" not in switched
    on = fmt.render(template, [user])
    assert "Reasoning Mode: /think" in on and on.endswith("<|im_start|>assistant\n")
    parser = fmt.make_parser(think=False, prompt=off)
    parser.feed("Hello!")
    parser.finish()
    assert (parser.content, parser.thinking) == ("Hello!", "")


# SmolLM3's own template (not llama.cpp's copy) reads the tools as `xml_tools`, which HF callers
# pass by that name; a template of that shape:
XML_TOOLS = ("{% if xml_tools %}<tools>{% for t in xml_tools %}{{ t | string }}\n{% endfor %}</tools>\n"
             "Call one inside <tool_call></tool_call>.\n{% endif %}"
             "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
             "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.mark.parametrize("tools", [[WEATHER], None])
def test_a_template_reading_xml_tools_gets_them_there(tools, hf_tokenizer):
    fmt = chat_format({"general.architecture": "smollm3"}, XML_TOOLS)
    assert (fmt.tool_family, fmt.template_renders_tools, fmt.xml_tools) == ("hermes", True, True)
    messages = CONVERSATIONS["plain"][0]
    ours = fmt.render(ChatTemplate(XML_TOOLS, BOS, EOS), messages, tools)
    assert ours == hf_tokenizer.apply_chat_template(messages, chat_template=XML_TOOLS, tokenize=False,
                                                    add_generation_prompt=True, xml_tools=tools)
    assert ("get_weather" in ours) == bool(tools) and fmt.system_prompt_for_tools(tools) is None
