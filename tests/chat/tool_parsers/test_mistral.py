"""Mistral tool calls: [TOOL_CALLS] with a JSON array, and the newer [TOOL_CALLS]name[ARGS]{...}."""
import json

import pytest

from tensorsharp.chat.tool_parsers.mistral import MistralParser


def test_json_array_of_parallel_calls(parse):
    text = ('[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}, '
            '{"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "f5g6h7i8j"}]')
    got = parse(MistralParser, text)
    assert got.calls == [("get_weather", '{"city": "Paris"}'), ("get_weather", '{"city": "Oslo"}')]
    assert got.content == ""


def test_name_args_form_with_text_before(parse):
    text = 'Sure.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "q": {"a": "]}[ARGS]"}}[TOOL_CALLS]get_time[ARGS]{}'
    got = parse(MistralParser, text)
    assert got.content == "Sure."
    assert got.calls == [("get_weather", '{"city": "Paris", "q": {"a": "]}[ARGS]"}}'), ("get_time", "{}")]


def test_call_id_before_args(parse):
    got = parse(MistralParser, '[TOOL_CALLS]lookup[CALL_ID]x9Yz12345[ARGS] {"k": [1, 2]} and then text')
    assert got.calls == [("lookup", '{"k": [1, 2]}')] and got.content == "and then text"


@pytest.mark.parametrize("text", [
    "[TOOL_CALLS]two words[ARGS]{}",
    "[TOOL_CALLS][ARGS]{}",            # no name
    "[TOOL_CALLS] [not json]",
    "A list [TOOL_CA",
])
def test_what_is_no_call_is_content(parse, text):
    got = parse(MistralParser, text)
    assert got.calls == [] and got.content == text


def test_arguments_cut_off_end_the_call(parse):
    got = parse(MistralParser, '[TOOL_CALLS]f[ARGS]{"a": [1, ')
    assert got.calls == [("f", '{"a": [1, ')]
    with pytest.raises(json.JSONDecodeError):
        json.loads(got.calls[0][1])
