"""One request's generated text turned into reply parts: content, thinking and tool calls.

Every route feeds the text a request generates through a Reply and renders the deltas it gets
back, so how text maps to a response lives here only. The parser is pluggable: PlainText makes
everything content; a chat-format parser (DESIGN.md section 2: feed / finish / content /
thinking / tool_calls) splits reasoning and tool calls out with the same delta types.
"""
from __future__ import annotations

import json

from tensorsharp.chat.output import ContentDelta


class PlainText:
    """The parser for requests with no tools and no thinking: all text is content."""

    def __init__(self):
        self.content = ""
        self.thinking = ""
        self.tool_calls: list[dict] = []

    def feed(self, text: str) -> list:
        self.content += text
        return [ContentDelta(text)] if text else []

    def finish(self, cut_off: bool = False) -> list:
        return []


class Reply:
    """The reply being built for one choice of one request."""

    def __init__(self, parser=None):
        self.parser = parser if parser is not None else PlainText()

    def feed(self, text: str) -> list:
        return self.parser.feed(text) if text else []

    def finish(self, cut_off: bool = False) -> list:
        """The held-back tail; cut_off: max_tokens ended the reply (a call it was opening is dropped)."""
        return self.parser.finish(cut_off)

    @property
    def content(self) -> str:
        return self.parser.content

    @property
    def thinking(self) -> str:
        return self.parser.thinking

    @property
    def tool_calls(self) -> list[dict]:
        """OpenAI shape: {"id", "type": "function", "function": {"name", "arguments": <json text>}}."""
        return self.parser.tool_calls

    def finish_reason(self, engine_reason: str) -> str:
        """OpenAI's finish_reason: a reply that ends in tool calls finished for "tool_calls"."""
        return "tool_calls" if self.tool_calls and engine_reason == "stop" else engine_reason


def arguments_object(text: str):
    """A tool call's arguments as an object, as Ollama sends them (the text if it is not JSON)."""
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text
