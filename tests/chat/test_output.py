"""OutputParser: one stream of deltas and the OpenAI-shaped aggregate, reasoning and calls together."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tensorsharp.chat.output import ContentDelta, OutputParser, ThinkingDelta, ToolCallDelta, chat_format
from tensorsharp.chat.reasoning import ReasoningSplitter
from tensorsharp.chat.tool_parsers.hermes import HermesParser

QWEN3 = "{% for t in tools %}<tool_call>{% endfor %}{% if enable_thinking %}<think>{% endif %}"
TOOLS = [{"type": "function", "function": {"name": "get_weather"}},
         {"type": "function", "function": {"name": "get_time"}}]
ANSWER = ('<think>\nParis and Oslo, both.\n</think>\n\nChecking.\n'
          '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "units": "c"}}\n</tool_call>\n'
          '<tool_call>\n{"name": "get_time", "arguments": {"tz": "Europe/Oslo"}}\n</tool_call>')


def test_aggregate_is_openai_shaped(counter_ids):
    p = chat_format({}, QWEN3).make_parser(TOOLS, new_id=counter_ids)
    p.feed(ANSWER)
    p.finish()
    assert p.thinking == "Paris and Oslo, both."
    assert p.content == "Checking."
    assert p.tool_calls == [
        {"id": "call_0", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris", "units": "c"}'}},
        {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "Europe/Oslo"}'}},
    ]


def test_a_call_cut_off_is_never_content(counter_ids):
    # Free or forced, an opened call is held to the call grammar (the lazy constraint of an auto
    # reply, the forced one otherwise): what the token limit cut is a call, never an answer.
    first = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n'
    for cut, names in (('{"name": "get', ["get_weather"]), ('{"name": "get_time", "argu', ["get_weather", "get_time"])):
        for calls_only in (False, True):
            p = chat_format({}, QWEN3).make_parser(TOOLS, new_id=counter_ids, calls_only=calls_only)
            p.feed(first + cut)
            p.finish()
            assert [c["function"]["name"] for c in p.tool_calls] == names
            assert p.content == ""


def test_same_result_whole_by_character_and_by_token(parse):
    fmt = chat_format({}, QWEN3)
    got = parse(lambda: fmt.make_parser(TOOLS), ANSWER)
    assert (got.thinking, got.content) == ("Paris and Oslo, both.", "Checking.")
    assert [name for name, _ in got.calls] == ["get_weather", "get_time"]
    assert [json.loads(args) for _, args in got.calls] == [{"city": "Paris", "units": "c"}, {"tz": "Europe/Oslo"}]


def test_deltas_arrive_in_order_as_text_is_generated():
    p = OutputParser(ReasoningSplitter(), HermesParser())
    kinds = []
    for ch in ANSWER:
        kinds += [type(d).__name__ for d in p.feed(ch)]
    kinds += [type(d).__name__ for d in p.finish()]
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
    assert collapsed == ["ThinkingDelta", "ContentDelta", "ToolCallDelta"]
    # Arguments are streamed as they come, not sent whole when the call ends.
    assert kinds.count("ToolCallDelta") > 40


def test_one_feed_gives_one_delta_per_kind_and_call():
    p = OutputParser(ReasoningSplitter(), HermesParser())
    out = p.feed(ANSWER) + p.finish()
    assert [type(d) for d in out] == [ThinkingDelta, ContentDelta, ToolCallDelta, ToolCallDelta]
    assert [d.index for d in out if isinstance(d, ToolCallDelta)] == [0, 1]


def test_think_false_keeps_reasoning_out_of_everything(parse):
    got = parse(lambda: chat_format({}, QWEN3).make_parser(TOOLS, think=False), ANSWER)
    assert (got.thinking, got.content, len(got.calls)) == ("", "Checking.", 2)


def test_without_tools_only_reasoning_is_split(parse):
    got = parse(lambda: chat_format({}, QWEN3).make_parser(None), ANSWER)
    assert got.calls == [] and got.thinking == "Paris and Oslo, both."
    assert got.content == ANSWER[ANSWER.index("Checking."):]


def test_plain_text_passes_through_untouched(parse):
    text = "Just an answer, with  double spaces,\ttabs and a trailing newline.\n"
    got = parse(lambda: chat_format({}, QWEN3).make_parser(TOOLS), text)
    assert (got.content, got.thinking, got.calls) == (text, "", [])


FRAGMENTS = ["<tool_call>", "</tool_call>", "<think>", "</think>", "[THINK]", "[/THINK]", "```json", "```",
             "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<|python_tag|>", '{"name": "f", ', '"arguments": ',
             '"parameters": ', '{"a": [1, "}"]}', '"function": {', "}", "{", "[", "]", '"', ",", ":", " ", "\n",
             "x", ";", "get_time", "<", "\\"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["hermes", "llama3", "mistral", "gemma", "generic"]), st.booleans(),
       st.lists(st.sampled_from(FRAGMENTS), max_size=25), st.data())
def test_any_text_split_anywhere_parses_the_same(feed, family, think, fragments, data):
    """Whatever the model writes, how the text is cut into deltas never changes the result."""
    text = "".join(fragments)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=8)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    fmt = chat_format({}, "[THINK]<think>", tool_format=family)
    whole, split = (feed(fmt.make_parser(TOOLS, think=think), chunks) for chunks in ([text], pieces))
    assert (split.content, split.thinking, split.calls) == (whole.content, whole.thinking, whole.calls)
