"""The reasoning split: a leading <think>…</think> block (or a family's own markers) becomes thinking."""
from __future__ import annotations

from tensorsharp.chat.output import ContentDelta, ThinkingDelta

THINK = ("<think>", "</think>")
MISTRAL_THINK = ("[THINK]", "[/THINK]")

_OPENING, _THINKING, _CLOSED, _CONTENT = range(4)


def partial_suffix(text: str, markers) -> int:
    """Length of the longest end of text that is the start of one of markers (held back
    because the next delta may complete the marker)."""
    best = 0
    for m in markers:
        for n in range(min(len(m) - 1, len(text)), best, -1):
            if text.endswith(m[:n]):
                best = n
                break
    return best


class ReasoningSplitter:
    """Splits a reasoning block off the start of the generated text, streaming.

    As in Ollama, reasoning is recognised only at the start (after whitespace): an opening marker
    found later is content. `in_thinking` says the prompt already opened the block (the template
    ended with "<think>"), so generation starts inside it. keep=False (think=False) drops the
    reasoning instead of returning it: it must never reach the content. Whitespace around the
    reasoning is trimmed, as the model's formatting, not its words.

    answer: the (opening, closing) markers some families wrap the answer in after their reasoning
    (Granite 3.3's <response>…</response>); they are dropped, keeping what they wrap as content."""

    def __init__(self, markers=(THINK,), *, in_thinking: bool = False, keep: bool = True,
                 answer: tuple[str, str] | None = None):
        self._markers = tuple(markers)
        self._inside = in_thinking  # where text goes if no opening marker comes first
        self._keep = keep
        self._answer = answer
        self._answer_close = ""  # once the answer's opening was seen: its closing, still to drop
        self._state = _OPENING
        self._close = self._markers[0][1]
        self._buf = ""
        self._ws = ""  # trailing whitespace of the reasoning, dropped if the block closes next
        self._started = False  # some reasoning text has been returned

    def feed(self, text: str) -> list:
        self._buf += text
        out: list = []
        while self._step(out, final=False):
            pass
        return out

    def finish(self) -> list:
        out: list = []
        while self._step(out, final=True):
            pass
        return out

    def _step(self, out: list, final: bool) -> bool:
        """Consume what can be decided from the buffer; False once it must wait for more text."""
        if not self._buf:
            return False
        if self._state == _OPENING:
            rest = self._buf.lstrip()
            for opening, closing in self._markers:
                if rest.startswith(opening):
                    self._buf, self._close, self._state = rest[len(opening):], closing, _THINKING
                    return True
            if not final and (not rest or any(o.startswith(rest) for o, _ in self._markers)):
                return False
            # Without a reasoning block, an answer block may still open the reply.
            self._state = _THINKING if self._inside else _CLOSED if self._answer else _CONTENT
            return True
        if self._state == _THINKING:
            at = self._buf.find(self._close)
            if at >= 0:
                self._think(out, self._buf[:at])
                self._buf, self._ws, self._state = self._buf[at + len(self._close):], "", _CLOSED
                return True
            hold = 0 if final else partial_suffix(self._buf, (self._close,))
            self._think(out, self._buf[:len(self._buf) - hold])
            self._buf = self._buf[len(self._buf) - hold:]
            return False
        if self._state == _CLOSED:
            self._buf = self._buf.lstrip()
            if not self._buf:
                return False
            if self._answer:
                opening = self._answer[0]
                if self._buf.startswith(opening):
                    self._buf, self._answer_close = self._buf[len(opening):], self._answer[1]
                elif not final and opening.startswith(self._buf):
                    return False
            self._state = _CONTENT
            return True
        if not self._answer_close:
            out.append(ContentDelta(self._buf))
            self._buf = ""
            return False
        at = self._buf.find(self._answer_close)
        end = at if at >= 0 else len(self._buf) - (0 if final else partial_suffix(self._buf, (self._answer_close,)))
        if end:
            out.append(ContentDelta(self._buf[:end]))
        if at < 0:
            self._buf = self._buf[end:]
            return False
        self._buf, self._answer_close = self._buf[at + len(self._answer_close):], ""
        return True

    def _think(self, out: list, text: str) -> None:
        if not self._keep:
            return
        text = self._ws + (text if self._started else text.lstrip())
        body = text.rstrip()
        self._ws = text[len(body):]
        if body:
            self._started = True
            out.append(ThinkingDelta(body))
