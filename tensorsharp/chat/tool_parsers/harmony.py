"""GPT-OSS's harmony format: messages on channels — analysis (reasoning), final (the answer),
commentary (preambles, and tool calls addressed `to=functions.NAME`, JSON after <|message|> up to
<|call|>) — split into thinking, content and tool-call deltas as they stream."""
from __future__ import annotations

import re
from typing import Callable

from tensorsharp.chat.output import ContentDelta, ThinkingDelta
from tensorsharp.chat.reasoning import partial_suffix
from tensorsharp.chat.tool_parsers.base import Family, ToolParser

START, CHANNEL, MESSAGE, CONSTRAIN = "<|start|>", "<|channel|>", "<|message|>", "<|constrain|>"
END, CALL, RETURN = "<|end|>", "<|call|>", "<|return|>"
MARKERS = (START, CHANNEL, MESSAGE, CONSTRAIN, END, CALL, RETURN)
_BODY_ENDS = (END, CALL, RETURN)
# What may open a header: the prompt ends with "<|start|>assistant", so the model goes on with the
# channel or a recipient; later messages repeat "<|start|>assistant".
_HEADER_OPENINGS = (START, CHANNEL, "to=", "assistant")
_RECIPIENT = re.compile(r"\bto=functions\.([^\s<]+)")
_CHANNEL = re.compile(re.escape(CHANNEL) + r"\s*(\w+)")
# A header runs to <|message|> within a few words; longer text without one is no header.
_HEADER_MAX = 256

_HEADER, _BODY, _RAW = range(3)


class HarmonyParser(ToolParser):
    """The whole reply's parser (harmony carries reasoning in its own channel, so no reasoning
    split comes before it). calls: tools were offered (else a message to a function is content).
    keep_thinking=False drops the analysis channel. Text outside any header (a model that does not
    speak harmony) is content."""

    def __init__(self, new_id: Callable[[], str] | None = None, *, calls: bool = True, keep_thinking: bool = True):
        super().__init__(new_id)
        self._calls, self._keep = calls, keep_thinking
        self._state = _HEADER
        self._kind = ""      # of the current body: "thinking", "content" or "call"
        self._started = False  # the current body has released text

    def _step(self, final: bool) -> bool:
        if self._state == _RAW:
            self._content(self._buf)
            self._buf = ""
            return False
        if self._state == _HEADER:
            return self._header(final)
        at = min(((self._buf.find(m), m) for m in _BODY_ENDS if m in self._buf), default=None)
        if at is not None:
            self._body(self._buf[:at[0]], last=True)
            self._buf, self._state = self._buf[at[0] + len(at[1]):], _HEADER
            if self._kind == "call":
                self.end_call()
            return True
        hold = 0 if final else partial_suffix(self._buf, _BODY_ENDS)
        self._body(self._buf[:len(self._buf) - hold], last=final)
        self._buf = self._buf[len(self._buf) - hold:]
        return False

    def _header(self, final: bool) -> bool:
        rest = self._buf.lstrip()
        if not rest:
            return False
        at = rest.find(MESSAGE)
        if at < 0:
            opens = any(rest.startswith(o) or o.startswith(rest) for o in _HEADER_OPENINGS)
            if opens and not final and len(rest) < _HEADER_MAX:
                return False
            self._state = _RAW
            return True
        header, self._buf = rest[:at], rest[at + len(MESSAGE):]
        recipient, channel = _RECIPIENT.search(header), _CHANNEL.search(header)
        self._started, self._state = False, _BODY
        if recipient and self._calls:
            self._kind = "call"
            self.begin_call(recipient.group(1), "")
        elif channel and channel.group(1) == "analysis":
            self._kind = "thinking"
        else:  # final, and commentary preambles the user may see
            self._kind = "content"
        return True

    def _body(self, text: str, last: bool) -> None:
        if not self._started:
            text = text.lstrip()
        if last:
            text = text.rstrip()
        if not text:
            return
        self._started = True
        if self._kind == "call":
            self.call_arguments(text)
        elif self._kind == "thinking":
            if self._keep:
                self._join_parts()
                self._out.append(ThinkingDelta(text))
        else:
            self._emit_content(text)

    def _emit_content(self, text: str) -> None:
        # Messages of one reply join as one answer; the base class's trimming would glue them.
        self._after_call = False
        self._emit(ContentDelta(text))


FAMILY = Family("harmony", HarmonyParser, call_prefix="", call_suffix="", arguments_key="arguments",
                calls_as_array=False, system_prompt=None, markers=MARKERS, channels=True)
