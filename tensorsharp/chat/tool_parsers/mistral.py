"""Mistral tool calls: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`, and the newer
`[TOOL_CALLS]name[ARGS]{...}` form (optionally `name[CALL_ID]id[ARGS]{...}`), one marker per call."""
from __future__ import annotations

import json
import re

from tensorsharp.chat.tool_parsers.base import RESULTS_NOTE, WHITESPACE, Family, ToolParser
from tensorsharp.chat.tool_parsers.json_reader import BEFORE, DONE, ERROR, JsonReader

TOOL_CALLS = "[TOOL_CALLS]"
ARGS = "[ARGS]"
CALL_ID = "[CALL_ID]"
_NAME = re.compile(r"[A-Za-z0-9_.\-]*")

_TEXT, _OPENED, _NAME_STATE, _CALL_ID_STATE, _ARGUMENTS, _CALLS = range(6)


class MistralParser(ToolParser):
    def __init__(self, new_id=None):
        super().__init__(new_id)
        self._mode = _TEXT
        self._raw = ""   # text since the marker, released as content if it is no call after all
        self._name = ""
        self._args: JsonReader | None = None
        self._args_fresh = False

    def _step(self, final: bool) -> bool:
        mode = self._mode
        if mode == _TEXT:
            if self._scan((TOOL_CALLS,), final) is None:
                return False
            self._mode, self._raw = _OPENED, TOOL_CALLS
            return True
        if mode == _OPENED:
            rest = self._buf.lstrip()
            if not rest:
                return self._wait_or_release(final)
            if rest[0] in "[{":
                self._start_calls(self._raw + self._buf[:len(self._buf) - len(rest)])
                self._buf, self._mode = rest, _CALLS
            else:
                self._raw += self._buf[:len(self._buf) - len(rest)]
                self._buf, self._name, self._mode = rest, "", _NAME_STATE
            return True
        if mode in (_NAME_STATE, _CALL_ID_STATE):
            return self._read_name(final)
        if mode == _ARGUMENTS:
            return self._read_arguments(final)
        read = self._read_calls(final)
        if read is None:
            return False
        self._mode = _TEXT
        return True

    def _read_name(self, final: bool) -> bool:
        """The function name (or call id) up to [ARGS] or [CALL_ID]."""
        buf = self._buf
        word = _NAME.match(buf).group()
        rest = buf[len(word):]
        self._raw += word
        if self._mode == _NAME_STATE:
            self._name += word
        self._buf = rest
        if not rest:
            return self._wait_or_release(final)
        for marker in (ARGS, CALL_ID):
            if rest.startswith(marker) and (self._mode == _NAME_STATE or marker == ARGS):
                self._buf = rest[len(marker):]
                if marker == CALL_ID:
                    self._raw += marker
                    self._mode = _CALL_ID_STATE
                    return True
                self._mode, self._args, self._args_fresh = _ARGUMENTS, JsonReader(), True
                self.begin_call(self._name, "")
                return True
        if not final and (ARGS.startswith(rest) or CALL_ID.startswith(rest)):
            return False
        return self._release()

    def _read_arguments(self, final: bool) -> bool:
        if self._args_fresh:  # whitespace before the arguments is layout, not argument text
            self._buf = self._buf.lstrip(WHITESPACE)
            if not self._buf:
                return self._end_call("") if final else False
            self._args_fresh = False
        for i, ch in enumerate(self._buf):
            status = self._args.feed(ch)
            if status in (ERROR, BEFORE):  # the character is not part of the arguments
                return self._end_call(self._buf[i:])
            self.call_arguments(ch)
            if status == DONE:
                return self._end_call(self._buf[i + 1:])
        self._buf = ""
        return self._end_call("") if final else False

    def _end_call(self, rest: str) -> bool:
        self.end_call()
        self._buf, self._args, self._mode = rest, None, _TEXT
        return True

    def _wait_or_release(self, final: bool) -> bool:
        return self._release() if final else False

    def _release(self) -> bool:
        """What followed the marker is no call: it is content, marker included."""
        self._content(self._raw)
        self._raw, self._mode = "", _TEXT
        return True


def system_prompt(tools: list) -> str:
    return ("[AVAILABLE_TOOLS]" + json.dumps(tools, ensure_ascii=False) + "[/AVAILABLE_TOOLS]\n"
            "To call tools, answer with [TOOL_CALLS] followed by a JSON array of calls: "
            '[TOOL_CALLS][{"name": "<function name>", "arguments": {"<argument>": <value>}}]. '
            "If no tool is needed, answer normally. " + RESULTS_NOTE)


FAMILY = Family("mistral", MistralParser, call_prefix=TOOL_CALLS, call_suffix="", arguments_key="arguments",
                calls_as_array=True, system_prompt=system_prompt, markers=(TOOL_CALLS, ARGS, CALL_ID),
                call_trigger=TOOL_CALLS)
