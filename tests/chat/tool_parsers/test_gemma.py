"""Gemma has no tool-call format of its own: a system prompt teaches it Hermes, which Hermes parses."""
import json

from tensorsharp.chat.tool_parsers import gemma, hermes

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Wetter für eine Stadt",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_system_prompt_lists_the_tools_and_shows_the_hermes_form():
    prompt = gemma.system_prompt(TOOLS)
    listed = prompt[prompt.index("<tools>\n") + 8:prompt.index("\n</tools>")]
    assert [json.loads(line) for line in listed.splitlines()] == TOOLS
    assert "Wetter für" in prompt  # non-ASCII kept readable for the model
    assert "<tool_call>" in prompt and "</tool_call>" in prompt


def test_the_taught_form_parses(parse):
    assert gemma.FAMILY.parser is hermes.HermesParser
    text = 'I will check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Köln"}}\n</tool_call>'
    got = parse(gemma.FAMILY.parser, text)
    assert got.calls == [("get_weather", '{"city": "Köln"}')] and got.content == "I will check."
