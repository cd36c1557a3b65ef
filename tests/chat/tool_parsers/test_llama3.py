"""Llama 3.x tool calls: bare JSON with "parameters", and <|python_tag|>."""
import pytest

from tensorsharp.chat.tool_parsers.llama3 import Llama3Parser


def test_bare_call_with_parameters(parse):
    got = parse(Llama3Parser, '{"name": "get_weather", "parameters": {"city": "San Francisco", "units": "f"}}')
    assert got.calls == [("get_weather", '{"city": "San Francisco", "units": "f"}')] and got.content == ""


def test_parallel_calls_separated_by_semicolons(parse):
    text = '{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {"y": [2, {"z": "}"}]}}'
    assert parse(Llama3Parser, text).calls == [("a", '{"x": 1}'), ("b", '{"y": [2, {"z": "}"}]}')]


def test_python_tag_call_after_text_and_text_after(parse):
    text = 'Checking.<|python_tag|>{"name": "search", "parameters": {"q": "{brace}"}} Done.'
    got = parse(Llama3Parser, text)
    assert got.calls == [("search", '{"q": "{brace}"}')]
    assert got.content == "Checking.Done."


@pytest.mark.parametrize("text", [
    '{"title": "A JSON answer", "parameters": 3}',         # a key no call has
    '{"name": "Ada"} is a JSON object',                     # a name, but no parameters
    'The call {"name": "f", "parameters": {}} is quoted',   # not at the start: prose
    '<|python_tag|>brave_search.call(query="weather")',      # built-in tool code: no JSON call
])
def test_what_is_no_call_is_content(parse, text):
    got = parse(Llama3Parser, text)
    assert got.calls == [] and got.content == text


def test_broken_parameters_end_the_call_where_they_break(parse):
    # The call began at the "{" of its parameters; "nope" stops being JSON at its "o".
    got = parse(Llama3Parser, '{"name": "f", "parameters": {"a": nope}}')
    assert got.calls == [("f", '{"a": n')] and got.content == "ope}}"
