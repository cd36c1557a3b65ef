"""The reasoning split on hand-made streams and on a synthetic qwen3 model with a thinking template."""
import pytest

from tensorsharp.chat.output import chat_format
from tensorsharp.chat.reasoning import MISTRAL_THINK, THINK, ReasoningSplitter


def splitter(**kw):
    return lambda: ReasoningSplitter((THINK, MISTRAL_THINK), **kw)


def test_think_block_is_split_off_and_trimmed(parse):
    got = parse(splitter(), "<think>\nThe user greets me. I greet back.\n</think>\n\nHello!")
    assert (got.thinking, got.content) == ("The user greets me. I greet back.", "Hello!")


def test_markers_split_across_deltas_are_held_back():
    s = ReasoningSplitter()
    per_feed = [[(type(d).__name__, d.text) for d in s.feed(piece)]
                for piece in ["<thi", "nk>a < b", "</thi", "nk", ">4"]]
    assert per_feed == [[], [("ThinkingDelta", "a < b")], [], [], [("ContentDelta", "4")]]
    assert s.finish() == []


def test_mistral_markers(parse):
    got = parse(splitter(), "[THINK]Two plus two.[/THINK]4")
    assert (got.thinking, got.content) == ("Two plus two.", "4")


def test_generation_that_starts_inside_thinking(parse):
    got = parse(splitter(in_thinking=True), "\nLet me count: 1, 2.\n</think>\n\nTwo.")
    assert (got.thinking, got.content) == ("Let me count: 1, 2.", "Two.")
    # A model that repeats the opening marker the prompt already holds.
    assert parse(splitter(in_thinking=True), "<think>x</think>y").thinking == "x"


def test_think_false_drops_reasoning_the_model_emits_anyway(parse):
    got = parse(splitter(keep=False), "<think>secret plan</think>\nThe answer.")
    assert (got.thinking, got.content) == ("", "The answer.")
    got = parse(splitter(keep=False, in_thinking=True), "still thinking, then cut off")
    assert (got.thinking, got.content) == ("", "")


@pytest.mark.parametrize("text", [
    "No reasoning here.",
    "  \n Indented answer",
    "A tag later: <think>is content</think>",
    "<thinking is not the marker",
    "<thi",
    "",
])
def test_text_without_a_leading_block_is_content(parse, text):
    got = parse(splitter(), text)
    assert (got.thinking, got.content) == ("", text)


def test_unterminated_reasoning_stays_reasoning(parse):
    got = parse(splitter(), "<think>I was cut off by max_tokens </thi")
    assert (got.thinking, got.content) == ("I was cut off by max_tokens </thi", "")


@pytest.mark.parametrize("text, thinking, content", [
    ("<think>Sunny, says the tool.</think><response>It is sunny.</response>", "Sunny, says the tool.", "It is sunny."),
    ("<think>x</think>\n<response>a <b>bold</b> answer</response>\nmore", "x", "a <b>bold</b> answer\nmore"),
    ("<response>No reasoning first.</response>", "", "No reasoning first."),
    ("Plain answer </response>", "", "Plain answer </response>"),   # no opening: nothing to unwrap
    ("<think>x</think><response>cut off </respo", "x", "cut off </respo"),
    ("<think>x</think>The <response> tag later is text", "x", "The <response> tag later is text"),
])
def test_granite_answer_wrapper_is_dropped(parse, text, thinking, content):
    got = parse(splitter(answer=("<response>", "</response>")), text)
    assert (got.thinking, got.content) == (thinking, content)


def test_reasoning_then_a_tool_call(parse):
    fmt = chat_format({"general.architecture": "qwen3"}, "{{ tools }}<tool_call><think>enable_thinking")
    text = '<think>Need the weather.</think>\n\n<tool_call>\n{"name": "w", "arguments": {"c": "Oslo"}}\n</tool_call>'
    got = parse(lambda: fmt.make_parser([{"type": "function", "function": {"name": "w"}}]), text)
    assert (got.thinking, got.content, got.calls) == ("Need the weather.", "", [("w", '{"c": "Oslo"}')])


# A Qwen3-style template: tools in the system turn, and with enable_thinking=false an empty
# reasoning block closes the generation prompt so the model answers directly.
QWEN3_TEMPLATE = """\
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}# Tools

<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags.<|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for m in messages if m.role != 'system' %}<|im_start|>{{ m.role }}
{% if m.role == 'assistant' and '</think>' in m.content %}{{ m.content.split('</think>')[-1].lstrip() }}\
{% else %}{{ m.content }}{% endif %}<|im_end|>
{% endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% if enable_thinking is defined and enable_thinking is false %}<think>

</think>

{% endif %}{% endif %}"""
# The same, for a model that always reasons: the generation prompt opens the block itself.
ALWAYS_THINKS_TEMPLATE = QWEN3_TEMPLATE.replace(
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}",
    "<think>\n")


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers", minversion="5")
    import gguf

    from tensorsharp.testing import tiny_gguf

    added = {"<|im_start|>": gguf.TokenType.CONTROL, "<|im_end|>": gguf.TokenType.CONTROL,
             "<think>": gguf.TokenType.USER_DEFINED, "</think>": gguf.TokenType.USER_DEFINED,
             "<tool_call>": gguf.TokenType.USER_DEFINED, "</tool_call>": gguf.TokenType.USER_DEFINED}
    model = tiny_gguf.random_model(tiny_gguf.tiny_config("qwen3"), seed=3)
    directory = tmp_path_factory.mktemp("qwen3")
    return {name: tiny_gguf.write_gguf(model, directory / f"{name}.gguf", chat_template=source, added_tokens=added)
            for name, source in (("qwen3", QWEN3_TEMPLATE), ("always", ALWAYS_THINKS_TEMPLATE))}


def _load(path):
    from tensorsharp.chat.template import ChatTemplate
    from tensorsharp.gguf import GGUFFile
    from tensorsharp.tokenizer import Tokenizer

    md = GGUFFile(path).metadata
    tokenizer = Tokenizer.from_metadata(md)
    return md, tokenizer, ChatTemplate.for_model(md, tokenizer)


def _pieces(tokenizer, text):
    decoder = tokenizer.stream(at_start=False)
    return [decoder.feed(t) for t in tokenizer.encode(text, add_special=False, parse_special=True)] + [decoder.flush()]


def test_qwen3_prompt_with_thinking_on_and_off(tiny_qwen3):
    md, tokenizer, template = _load(tiny_qwen3["qwen3"])
    fmt = chat_format(md, template.source)
    assert fmt.supports_thinking and fmt.tool_family == "hermes" and fmt.supports_tools
    messages = [{"role": "user", "content": "hi"}]
    on = template.render(messages, enable_thinking=True)
    off = template.render(messages, enable_thinking=False)
    assert on == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert off == on + "<think>\n\n</think>\n\n"
    assert not fmt.starts_in_thinking(on) and not fmt.starts_in_thinking(off)
    # The markers are single tokens of this vocabulary, as in the real Qwen3.
    think, end = tokenizer.token_id("<think>"), tokenizer.token_id("</think>")
    off_ids = tokenizer.encode(off, add_special=False, parse_special=True)
    assert off_ids.count(think) == off_ids.count(end) == 1 and off_ids.index(think) < off_ids.index(end)
    assert think not in tokenizer.encode(on, add_special=False, parse_special=True)


@pytest.mark.parametrize("think", [True, None, False])
def test_qwen3_token_stream_is_split(tiny_qwen3, think):
    md, tokenizer, template = _load(tiny_qwen3["qwen3"])
    fmt = chat_format(md, template.source)
    prompt = template.render([{"role": "user", "content": "hi"}], enable_thinking=think is not False)
    text = "<think>\nthe user says hi\n</think>\n\nhello there"
    pieces = _pieces(tokenizer, text)
    assert "<think>" in pieces and "</think>" in pieces  # whole tokens, as the model emits them
    p = fmt.make_parser(think=think, prompt=prompt)
    for piece in pieces:
        p.feed(piece)
    p.finish()
    assert p.content == "hello there"
    assert p.thinking == ("" if think is False else "the user says hi")


def test_template_that_opens_the_block_starts_generation_inside_it(tiny_qwen3):
    md, tokenizer, template = _load(tiny_qwen3["always"])
    fmt = chat_format(md, template.source)
    prompt = template.render([{"role": "user", "content": "hi"}])
    assert prompt.endswith("<|im_start|>assistant\n<think>\n") and fmt.starts_in_thinking(prompt)
    p = fmt.make_parser(prompt=prompt)
    for piece in _pieces(tokenizer, "weighing it up\n</think>\n\nyes"):
        p.feed(piece)
    p.finish()
    assert (p.thinking, p.content) == ("weighing it up", "yes")


def test_random_qwen3_generation_goes_through_the_parser(tiny_qwen3):
    """The model cannot be made to reason, but what it does generate must come out whole:
    with no reasoning block at its start, every character is content."""
    import tensorsharp

    md, tokenizer, template = _load(tiny_qwen3["qwen3"])
    model = tensorsharp.Model(str(tiny_qwen3["qwen3"]), n_ctx=128)
    prompt = template.render([{"role": "user", "content": "hi"}], enable_thinking=False)
    decoder = model.tokenizer.stream(at_start=False)
    pieces = [decoder.feed(t) for t in model.generate(model.tokenize_prompt(prompt), 24)] + [decoder.flush()]
    text = "".join(pieces)
    p = chat_format(md, template.source).make_parser(think=False, prompt=prompt)
    for piece in pieces:
        p.feed(piece)
    p.finish()
    assert p.thinking == ""
    if text.lstrip().startswith("<think>"):  # reasoning after all: dropped, as think=False asks
        _, closed, after = text.partition("</think>")
        assert p.content == (after.lstrip() if closed else "")
    else:
        assert p.content == text
