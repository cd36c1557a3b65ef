"""Granite 3.x tool calls: <|tool_call|> and a JSON list of calls."""
import pytest

from tensorsharp.chat.tool_parsers.granite import GraniteParser


def test_one_call(parse):
    got = parse(GraniteParser, '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]')
    assert got.calls == [("get_weather", '{"city": "Paris"}')] and got.content == ""


def test_parallel_calls_in_one_list_after_text(parse):
    text = ('Checking both.<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
            '{"arguments": {"city": "Oslo"}, "name": "get_weather"}]')
    got = parse(GraniteParser, text)
    assert got.calls == [("get_weather", '{"city": "Paris"}'), ("get_weather", '{"city": "Oslo"}')]
    assert got.content == "Checking both."


def test_a_single_object_after_the_marker_is_a_call_too(parse):
    got = parse(GraniteParser, '<|tool_call|> {"name": "get_time", "arguments": {}}')
    assert got.calls == [("get_time", "{}")]


@pytest.mark.parametrize("text", [
    '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',   # no marker: an answer
    '{"name": "get_weather", "arguments": {}}',
    'Use <|tool_call|> to call tools.',                            # the marker and no JSON
])
def test_what_is_no_call_is_content(parse, text):
    got = parse(GraniteParser, text)
    assert got.calls == [] and got.content == text
