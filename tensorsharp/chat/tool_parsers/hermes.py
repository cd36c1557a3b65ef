"""Hermes / Qwen tool calls: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one per block."""
from __future__ import annotations

import json

from tensorsharp.chat.tool_parsers.base import Family, ToolParser

OPEN = "<tool_call>"
CLOSE = "</tool_call>"

_TEXT, _CALLS, _CLOSE = range(3)


class HermesParser(ToolParser):
    def __init__(self, new_id=None):
        super().__init__(new_id)
        self._mode = _TEXT

    def _step(self, final: bool) -> bool:
        if self._mode == _TEXT:
            if self._scan((OPEN,), final) is None:
                return False
            self._start_calls(OPEN)
            self._mode = _CALLS
            return True
        if self._mode == _CALLS:
            read = self._read_calls(final)
            if read is None:
                return False
            self._mode = _CLOSE if read else _TEXT
            return True
        # A missing closing tag is forgiven: whatever follows the JSON is read as text.
        found = self._expect(CLOSE, final)
        if found is None:
            return False
        self._mode = _TEXT
        return True


def tools_block(tools: list) -> str:
    return "<tools>\n" + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools) + "\n</tools>"


def system_prompt(tools: list) -> str:
    return ("You can call functions to answer the user. They are described as JSON inside "
            "<tools></tools> tags:\n" + tools_block(tools) + "\n\n"
            "To call a function, answer with its name and arguments as a JSON object inside "
            "<tool_call></tool_call> tags, one block per call:\n"
            '<tool_call>\n{"name": "<function name>", "arguments": {"<argument>": <value>}}\n</tool_call>\n'
            "If no function is needed, answer normally.")


FAMILY = Family("hermes", HermesParser, call_prefix=OPEN + "\n", call_suffix="\n" + CLOSE,
                arguments_key="arguments", calls_as_array=False, system_prompt=system_prompt)
