"""A reply parser that follows a script instead of a model's output, for the routes' reasoning and
tool-call streaming when no served model thinks or calls tools on cue."""
from __future__ import annotations

from tensorsharp.chat.output import ContentDelta, ThinkingDelta, ToolCallDelta

CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


class ScriptedParser:
    """The first text piece is thinking, the rest content; finish() adds CALL in two pieces."""

    def __init__(self):
        self.content, self.thinking, self.tool_calls = "", "", []

    def feed(self, text):
        if not self.thinking:
            self.thinking = text or "."
            return [ThinkingDelta(self.thinking)]
        self.content += text
        return [ContentDelta(text)]

    def finish(self, cut_off=False):
        self.tool_calls = [CALL]
        return [ToolCallDelta(0, "call_1", "get_weather", '{"city": '), ToolCallDelta(0, None, None, '"Paris"}')]
