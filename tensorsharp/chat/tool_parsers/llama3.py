"""Llama 3.x tool calls: a bare `{"name": ..., "parameters": {...}}` answer, or JSON after `<|python_tag|>`."""
from __future__ import annotations

import json

from tensorsharp.chat.tool_parsers.base import WHITESPACE, Family, ToolParser

PYTHON_TAG = "<|python_tag|>"
# Llama 3.2 separates parallel calls with ";" (or nothing but whitespace).
_BETWEEN_CALLS = WHITESPACE + ";"

_START, _TEXT, _CALLS, _AFTER = range(4)


class Llama3Parser(ToolParser):
    """A JSON object that opens the answer is a call if its keys are a call's keys; otherwise it is
    content, and only <|python_tag|> can start a call later. Text after the tag that is no JSON
    call (code for a built-in tool) is content, with the tag."""

    def __init__(self, new_id=None):
        super().__init__(new_id)
        self._mode = _START

    def _step(self, final: bool) -> bool:
        if self._mode in (_START, _AFTER):
            skip = WHITESPACE if self._mode == _START else _BETWEEN_CALLS
            rest = self._buf.lstrip(skip)
            if rest[:1] in ("{", "["):
                self._start_calls(self._buf[:len(self._buf) - len(rest)], bare=True)
                self._buf, self._mode = rest, _CALLS
                return True
            tagged = self._expect(PYTHON_TAG, final, skip)
            if tagged is None:
                return False
            if tagged:
                self._start_calls(PYTHON_TAG)
                self._mode = _CALLS
            else:
                self._mode = _TEXT
            return True
        if self._mode == _TEXT:
            if self._scan((PYTHON_TAG,), final) is None:
                return False
            self._start_calls(PYTHON_TAG)
            self._mode = _CALLS
            return True
        read = self._read_calls(final)
        if read is None:
            return False
        self._mode = _AFTER if read else _TEXT
        return True


def system_prompt(tools: list) -> str:
    return ("You have access to the following functions, described in JSON:\n"
            + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools) + "\n\n"
            "To call a function, answer with only a JSON object in the format "
            '{"name": "<function name>", "parameters": {"<argument>": <value>}} and nothing else. '
            "If no function is needed, answer normally.")


FAMILY = Family("llama3", Llama3Parser, call_prefix="", call_suffix="", arguments_key="parameters",
                calls_as_array=False, system_prompt=system_prompt)
