"""The fallback for models with no known tool-call format: a JSON call object (or array of them)
as the whole answer, or inside a fenced ```json block anywhere in it."""
from __future__ import annotations

import json

from tensorsharp.chat.tool_parsers.base import WHITESPACE, Family, ToolParser

FENCE = "```json"
FENCE_END = "```"

_START, _TEXT, _CALLS, _FENCED_CALLS, _FENCE_END, _AFTER = range(6)


class GenericParser(ToolParser):
    """Without a marker, only JSON whose keys are a call's keys (name plus arguments or
    parameters, optionally nested under "function") counts as a call; other JSON is content."""

    def __init__(self, new_id=None):
        super().__init__(new_id)
        self._mode = _START

    def _step(self, final: bool) -> bool:
        mode = self._mode
        if mode in (_START, _AFTER):
            rest = self._buf.lstrip(WHITESPACE)
            if not rest and not final:
                return False
            if rest[:1] in ("{", "["):
                self._start_calls(self._buf[:len(self._buf) - len(rest)], bare=True)
                self._buf, self._mode = rest, _CALLS
            else:
                self._mode = _TEXT
            return True
        if mode == _TEXT:
            if self._scan((FENCE,), final) is None:
                return False
            self._start_calls(FENCE, bare=True)
            self._mode = _FENCED_CALLS
            return True
        if mode == _FENCE_END:
            found = self._expect(FENCE_END, final)
            if found is None:
                return False
            self._mode = _TEXT
            return True
        read = self._read_calls(final)
        if read is None:
            return False
        self._mode = (_FENCE_END if mode == _FENCED_CALLS else _AFTER) if read else _TEXT
        return True


def system_prompt(tools: list) -> str:
    return ("You can call these functions, described in JSON:\n"
            + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools) + "\n\n"
            "To call a function, answer with only a JSON object, nothing before or after it: "
            '{"name": "<function name>", "arguments": {"<argument>": <value>}}. '
            "If no function is needed, answer in plain text.")


FAMILY = Family("generic", GenericParser, call_prefix="", call_suffix="", arguments_key="arguments",
                calls_as_array=False, system_prompt=system_prompt)
