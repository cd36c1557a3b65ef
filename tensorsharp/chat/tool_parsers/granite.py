"""Granite 3.x tool calls: `<|tool_call|>` followed by a JSON array of `{"name": ..., "arguments": {...}}`.

(Granite 4 templates teach the Hermes `<tool_call>` form instead, which the Hermes parser reads.)"""
from __future__ import annotations

from tensorsharp.chat.tool_parsers.base import Block, Family, JsonCallParser

TOOL_CALL = "<|tool_call|>"


class GraniteParser(JsonCallParser):
    """The template tells the model to answer "only with <|tool_call|> followed by a JSON list", so
    JSON without the marker is an answer, not a call."""

    BLOCKS = (Block(TOOL_CALL),)
    BARE_START = False


# The Granite 3.x templates lay out the tools themselves: there is no taught form.
FAMILY = Family("granite", GraniteParser, call_prefix=TOOL_CALL, call_suffix="", arguments_key="arguments",
                calls_as_array=True, system_prompt=None, markers=(TOOL_CALL,), call_trigger=TOOL_CALL)
