"""Phi-4-mini tool calls: a JSON array between <|tool_call|> and <|/tool_call|>, or after `functools`."""
import pytest

from tensorsharp.chat.tool_parsers.phi4 import Phi4Parser


def test_tagged_array_of_parallel_calls(parse):
    text = ('<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
            '{"name": "get_time", "arguments": {}}]<|/tool_call|>')
    got = parse(Phi4Parser, text)
    assert got.calls == [("get_weather", '{"city": "Paris"}'), ("get_time", "{}")]
    assert got.content == ""


def test_functools_marker_after_text(parse):
    got = parse(Phi4Parser, 'Let me look.\nfunctools[{"name": "get_weather", "arguments": {"city": "Rome"}}]')
    assert got.content == "Let me look."
    assert got.calls == [("get_weather", '{"city": "Rome"}')]


@pytest.mark.parametrize("text", [
    "The functools module has lru_cache.",
    "<|tool_call|>not json<|/tool_call|>",
    "An answer that ends <|tool_ca",
])
def test_what_is_no_call_is_content(parse, text):
    got = parse(Phi4Parser, text)
    assert got.calls == [] and got.content == text
