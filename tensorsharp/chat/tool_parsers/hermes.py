"""Hermes / Qwen tool calls: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one per block.

Small Qwen models also drop the tags or fence the JSON as Markdown, so a bare call object that
opens the answer and a ```json block holding a call are read as calls too."""
from __future__ import annotations

import json

from tensorsharp.chat.tool_parsers.base import RESULTS_NOTE, Block, Family, JsonCallParser

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
FENCE = Block("```json", "```", bare=True)


class HermesParser(JsonCallParser):
    BLOCKS = (Block(OPEN, CLOSE), FENCE)


def tools_block(tools: list) -> str:
    return "<tools>\n" + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools) + "\n</tools>"


def system_prompt(tools: list) -> str:
    return ("You can call functions to answer the user. They are described as JSON inside "
            "<tools></tools> tags:\n" + tools_block(tools) + "\n\n"
            "To call a function, answer with its name and arguments as a JSON object inside "
            "<tool_call></tool_call> tags, one block per call:\n"
            '<tool_call>\n{"name": "<function name>", "arguments": {"<argument>": <value>}}\n</tool_call>\n'
            "If no function is needed, answer normally. " + RESULTS_NOTE)


FAMILY = Family("hermes", HermesParser, call_prefix=OPEN + "\n", call_suffix="\n" + CLOSE,
                arguments_key="arguments", calls_as_array=False, system_prompt=system_prompt, markers=(OPEN, CLOSE),
                call_trigger=OPEN)
