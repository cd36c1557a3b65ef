"""What every tool-call family shares: the streaming parser base and the family description."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Callable

from tensorsharp.chat.output import ContentDelta, Delta, ToolCallDelta
from tensorsharp.chat.reasoning import partial_suffix
from tensorsharp.chat.tool_parsers.calls import FAILED, MORE, CallReader

WHITESPACE = " \t\n\r"


# How a taught model is shown the results of its calls (the Hermes convention, for every family).
RESULTS_NOTE = "The results of your calls come back inside <tool_response></tool_response> tags."


def tool_response(text: str) -> str:
    return f"<tool_response>\n{text}\n</tool_response>"


def random_call_id() -> str:
    return "call_" + secrets.token_hex(12)


class ToolParser:
    """Turns content text into content and tool-call deltas, streaming.

    A family implements _step(final): consume what the buffer already decides and return True
    to be called again, or False to wait for more text (with final=True: nothing left to do).
    Text that may still become a marker stays in the buffer; whatever is left at the end is
    content. Whitespace next to calls is layout, not an answer: what follows a call is dropped,
    and what precedes one is kept only if more content comes after it."""

    def __init__(self, new_id: Callable[[], str] | None = None):
        self._new_id = new_id or random_call_id
        self._buf = ""
        self._out: list[Delta] = []
        self._index = -1          # index of the latest call
        self._ws = ""             # trailing whitespace of the content, held until we know what follows
        self._after_call = False  # no content since the last call ended
        self._reader: CallReader | None = None
        self._parts: list[str] = []  # argument text of the last delta in _out, not yet joined

    def feed(self, text: str) -> list[Delta]:
        self._buf += text
        while self._step(final=False):
            pass
        return self._take()

    def finish(self) -> list[Delta]:
        while self._step(final=True):
            pass
        self._content(self._buf)
        self._buf = ""
        if not self._after_call and self._ws:
            self._emit(ContentDelta(self._ws))
        self._ws = ""
        return self._take()

    def _step(self, final: bool) -> bool:
        raise NotImplementedError

    # -- what CallReader reports ---------------------------------------------------------------
    def begin_call(self, name: str, arguments: str) -> None:
        self._join_parts()
        self._index += 1
        self._out.append(ToolCallDelta(self._index, self._new_id(), name, arguments))

    def call_arguments(self, text: str) -> None:
        last = self._out[-1] if self._out else None
        if not (isinstance(last, ToolCallDelta) and last.index == self._index):
            self._out.append(ToolCallDelta(self._index, None, None, ""))
        self._parts.append(text)  # joined into the last delta when it is handed out

    def end_call(self) -> None:
        self._after_call = True

    # -- helpers for the families --------------------------------------------------------------
    def _content(self, text: str) -> None:
        if self._after_call:
            text = text.lstrip()
            if not text:
                return
            self._after_call = False
        text = self._ws + text
        body = text.rstrip()
        self._ws = text[len(body):]
        if body:
            self._emit(ContentDelta(body))

    def _scan(self, markers: tuple[str, ...], final: bool) -> str | None:
        """Release the content before the first of markers and consume the marker, returning it;
        without one, release all but a possible marker start and return None."""
        buf = self._buf
        found = min(((buf.find(m), m) for m in markers if m in buf), default=None)
        if found is not None:
            at, marker = found
            self._content(buf[:at])
            self._buf = buf[at + len(marker):]
            return marker
        keep = 0 if final else partial_suffix(buf, markers)
        self._content(buf[:len(buf) - keep])
        self._buf = buf[len(buf) - keep:]
        return None

    def _expect(self, marker: str, final: bool, skip: str = WHITESPACE) -> bool | None:
        """Whether marker comes next after characters of skip: True (both consumed), False
        (something else comes; nothing consumed) or None (the text so far cannot tell)."""
        rest = self._buf.lstrip(skip)
        if rest.startswith(marker):
            self._buf = rest[len(marker):]
            return True
        if not final and marker.startswith(rest):
            return None
        return False

    def _start_calls(self, lead: str, bare: bool = False) -> None:
        self._reader = CallReader(self, lead, bare)

    def _read_calls(self, final: bool) -> bool | None:
        """Feed the buffer to the call reader. None: it needs more text. True: calls were read
        (the buffer holds what follows them). False: it was no call, and its text is content."""
        reader = self._reader
        for i, ch in enumerate(self._buf):
            status = reader.feed(ch)
            if status != MORE:
                self._buf = self._buf[i + (status != FAILED):]
                return self._end_calls(reader)
        self._buf = ""
        if not final:
            return None
        reader.cut()
        return self._end_calls(reader)

    def _end_calls(self, reader: CallReader) -> bool:
        self._reader = None
        self._content(reader.unowned)
        return reader.calls > 0

    def _take(self) -> list[Delta]:
        self._join_parts()
        out, self._out = self._out, []
        return out

    def _join_parts(self) -> None:
        if self._parts:
            self._out[-1].arguments += "".join(self._parts)
            self._parts = []

    def _emit(self, delta: ContentDelta) -> None:
        self._join_parts()
        last = self._out[-1] if self._out else None
        if isinstance(last, ContentDelta):
            last.text += delta.text
        else:
            self._out.append(delta)


@dataclass(frozen=True)
class Block:
    """Text that introduces JSON tool calls and, optionally, text that closes them. bare: the JSON
    must look like a call (only a call's keys) to count, as after a Markdown fence."""
    opening: str
    closing: str = ""
    bare: bool = False


_START, _TEXT, _CALLS, _CLOSING, _AFTER = range(5)


class JsonCallParser(ToolParser):
    """Calls as JSON objects (or arrays of them) inside the family's blocks, or, with BARE_START,
    as JSON that opens the answer or follows another call. Markers that never close are
    forgiven: whatever follows the JSON is read as text."""

    BLOCKS: tuple[Block, ...] = ()
    BARE_START = True
    BETWEEN_CALLS = WHITESPACE  # what may separate one call from the next

    def __init__(self, new_id=None):
        super().__init__(new_id)
        self._mode = _START
        self._closing = ""

    def _step(self, final: bool) -> bool:
        mode = self._mode
        if mode in (_START, _AFTER):
            rest = self._buf.lstrip(WHITESPACE if mode == _START else self.BETWEEN_CALLS)
            if not rest and not final:
                return False
            if self.BARE_START and rest[:1] in ("{", "["):
                self._start_calls(self._buf[:len(self._buf) - len(rest)], bare=True)
                self._buf, self._closing, self._mode = rest, "", _CALLS
            else:
                self._mode = _TEXT
            return True
        if mode == _TEXT:
            opening = self._scan(tuple(b.opening for b in self.BLOCKS), final)
            if opening is None:
                return False
            block = next(b for b in self.BLOCKS if b.opening == opening)
            self._start_calls(opening, bare=block.bare)
            self._closing, self._mode = block.closing, _CALLS
            return True
        if mode == _CALLS:
            read = self._read_calls(final)
            if read is None:
                return False
            self._mode = (_CLOSING if self._closing else _AFTER) if read else _TEXT
            return True
        found = self._expect(self._closing, final)
        if found is None:
            return False
        self._mode = _AFTER
        return True


@dataclass(frozen=True)
class Family:
    """A tool-call wire format: its parser, the syntax a constraint grammar must produce (prefix,
    JSON call object(s) with `arguments_key`, suffix) and the system prompt that teaches it to a
    model whose template does not render tools (None: the family has no taught form). markers: the
    strings the parser looks for, which a vocabulary may hold as control tokens. call_trigger: the
    marker that opens a call in free text, from which a lazy constraint holds the output to a call
    ("": the family has none to wait for). channels: the parser reads the whole reply, reasoning
    included (GPT-OSS's harmony), and its calls are no JSON object a call grammar could hold."""
    name: str
    parser: type[ToolParser]
    call_prefix: str
    call_suffix: str
    arguments_key: str
    calls_as_array: bool
    system_prompt: Callable[[list], str] | None
    markers: tuple[str, ...] = ()
    call_trigger: str = ""
    channels: bool = False
