"""Phi-4-mini tool calls: a JSON array of `{"name": ..., "arguments": {...}}` between
`<|tool_call|>` and `<|/tool_call|>` (its vocabulary's own control tokens), or after the
`functools` marker the tool-calling templates of vLLM and SGLang teach it.

Its template reads the offered tools from the system message's `tools` field, a JSON text shown
between `<|tool|>` and `<|/tool|>`, not from the `tools` variable (see ChatFormat.message_tools)."""
from __future__ import annotations

import json

from tensorsharp.chat.tool_parsers.base import RESULTS_NOTE, Block, Family, JsonCallParser

TOOL_CALL = "<|tool_call|>"
TOOL_CALL_END = "<|/tool_call|>"
FUNCTOOLS = "functools"
TOOLS_OPEN, TOOLS_CLOSE = "<|tool|>", "<|/tool|>"
# The system text Phi-4-mini's model card gives a conversation with tools.
DEFAULT_SYSTEM = "You are a helpful assistant with some tools."


class Phi4Parser(JsonCallParser):
    BLOCKS = (Block(TOOL_CALL, TOOL_CALL_END), Block(FUNCTOOLS))


def tools_text(tools: list) -> str:
    """The tools as the model card lays them out: a JSON array of the function objects."""
    return json.dumps([t.get("function", t) for t in tools], ensure_ascii=False)


def system_prompt(tools: list) -> str:
    return (DEFAULT_SYSTEM + TOOLS_OPEN + tools_text(tools) + TOOLS_CLOSE + "\n"
            "To call tools, answer with a JSON array of calls between " + TOOL_CALL + " and " + TOOL_CALL_END
            + ': ' + TOOL_CALL + '[{"name": "<function name>", "arguments": {"<argument>": <value>}}]' + TOOL_CALL_END
            + ". If no tool is needed, answer normally. " + RESULTS_NOTE)


FAMILY = Family("phi4", Phi4Parser, call_prefix=TOOL_CALL, call_suffix=TOOL_CALL_END, arguments_key="arguments",
                calls_as_array=True, system_prompt=system_prompt, markers=(TOOL_CALL, TOOL_CALL_END),
                call_trigger=TOOL_CALL)
