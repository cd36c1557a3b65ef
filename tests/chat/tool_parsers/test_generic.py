"""The fallback format: a bare JSON call (or array of calls), or a fenced ```json block."""
import pytest

from tensorsharp.chat.tool_parsers.generic import GenericParser


def test_bare_object_and_bare_array(parse):
    assert parse(GenericParser, '  {"name": "f", "arguments": {"a": "{"}}').calls == [("f", '{"a": "{"}')]
    text = '[{"name": "f", "arguments": {}}, {"type": "function", "function": {"name": "g", "arguments": {"b": 2}}}]'
    assert parse(GenericParser, text).calls == [("f", "{}"), ("g", '{"b": 2}')]


def test_fenced_calls_amid_text(parse):
    text = ('First:\n```json\n{"name": "f", "arguments": {"x": 1}}\n```\nthen\n'
            '```json\n{"name": "g", "parameters": {"y": "```"}}\n```\nend')
    got = parse(GenericParser, text)
    assert got.calls == [("f", '{"x": 1}'), ("g", '{"y": "```"}')]
    assert got.content == "First:\nthen\nend"


@pytest.mark.parametrize("text", [
    '{"answer": 42}',
    '[1, 2, 3]',
    '[]',
    'Plain text with {"name": "f", "arguments": {}} inside',
    '```json\n{"city": "Paris"}\n```',
    '```python\nprint(1)\n```',
])
def test_json_that_is_no_call_is_content(parse, text):
    got = parse(GenericParser, text)
    assert got.calls == [] and got.content == text
