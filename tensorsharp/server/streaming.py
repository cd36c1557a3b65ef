"""Streamed response bodies: SSE frames (OpenAI, web UI) and NDJSON lines (Ollama)."""
from __future__ import annotations

import json
import secrets
from json.encoder import encode_basestring   # what json.dumps(ensure_ascii=False) makes of a str

from flask import Response
from werkzeug.wsgi import ClosingIterator


def sse_line(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


SSE_DONE = "data: [DONE]\n\n"


def ndjson_line(obj) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


class FrameTemplate:
    """frame(make(*texts)) for one stream's many chunks that differ only in a few strings.

    A token's chunk is mostly the same JSON every time (ids, model, nulls); this encodes it once
    with a marker in each string's place and then fills the markers with the strings' JSON, so a
    token costs a string escape instead of building and encoding a dict, with the same bytes."""

    def __init__(self, make, frame, n: int = 1):
        self._make, self._frame = make, frame
        holes = [f"\ue000{secrets.token_hex(8)}\ue001" for _ in range(n)]
        text = frame(make(*holes))
        quoted = [encode_basestring(h) for h in holes]
        # (piece before, index of the string that follows it) in order; each hole may appear
        # several times (a thinking delta carries its text under two names).
        self._parts: list | None = []
        while True:
            found = [(text.find(q), i) for i, q in enumerate(quoted) if q in text]
            if not found:
                break
            at, i = min(found)
            self._parts.append((text[:at], i))
            text = text[at + len(quoted[i]):]
        self._tail = text
        if {i for _, i in self._parts} != set(range(n)) or "\ue000" in text:
            self._parts = None   # a string the frame does not hold as it is: encode in full
        # One string: its JSON joins the pieces.
        self._pieces = [piece for piece, _ in self._parts] + [text] if n == 1 and self._parts else None

    def __call__(self, *texts: str) -> str:
        if self._pieces is not None:
            return encode_basestring(texts[0]).join(self._pieces)
        if self._parts is None:
            return self._frame(self._make(*texts))
        quoted = [encode_basestring(t) for t in texts]
        return "".join([piece + quoted[i] for piece, i in self._parts]) + self._tail


def _body(chunks, on_close):
    # A generator closed before its first step never runs its finally block; the WSGI server's
    # close() reaches on_close in any case (a client can leave before the first byte).
    return ClosingIterator(chunks, on_close) if on_close is not None else chunks


def sse_response(chunks, on_close=None) -> Response:
    # No buffering on the way: each frame is written as soon as it is yielded.
    return Response(_body(chunks, on_close), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def ndjson_response(chunks, on_close=None) -> Response:
    return Response(_body(chunks, on_close), mimetype="application/x-ndjson", headers={"Cache-Control": "no-cache"})


def sse_event(obj: dict) -> str:
    """An SSE frame named by its payload's type, as the Responses API streams them."""
    return f"event: {obj['type']}\n{sse_line(obj)}"
