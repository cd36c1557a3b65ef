"""Streamed response bodies: SSE frames (OpenAI, web UI) and NDJSON lines (Ollama)."""
from __future__ import annotations

import json
import secrets
from json.encoder import encode_basestring   # what json.dumps(ensure_ascii=False) makes of a str

from flask import Response


def sse_line(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


SSE_DONE = "data: [DONE]\n\n"


def ndjson_line(obj) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


class FrameTemplate:
    """frame(make(*texts)) for one stream's many chunks that differ only in a few strings.

    A token's chunk is mostly the same JSON every time (ids, model, nulls); this encodes it once
    with a marker in each string's place and then fills the markers with the strings' JSON, so a
    token costs a string escape instead of building and encoding a dict, with the same bytes.
    In a template of two or more values a value may also be an int (a sequence number): make
    gets a marker string in its place and the frame the int's JSON."""

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
        quoted = [encode_basestring(t) if type(t) is str else str(t) for t in texts]
        return "".join([piece + quoted[i] for piece, i in self._parts]) + self._tail


class _StreamResponse(Response):
    """A response whose str frames reach the WSGI server as the route yields them.

    Werkzeug would hand the server its own generator (encoding each item) inside a
    ClosingIterator: two Python calls per frame on the hub, which writes every streamed token.
    Here the server iterates a C map over the route's generator, and close() is the response's
    (the generator's close, then the on-close callbacks), which the server calls however the
    stream ends, also before its first step (a client can leave before the first byte). Streams
    answer POST routes only, so none needs werkzeug's empty body for HEAD, 204 or 304."""

    def get_app_iter(self, environ):
        return _Body(map(str.encode, self.response), self.close)


class _Body:
    """The WSGI body: iterating it is iterating the frames; close() is the response's."""

    __slots__ = ("_frames", "close")

    def __init__(self, frames, close):
        self._frames, self.close = frames, close

    def __iter__(self):
        return self._frames


def _stream(chunks, on_close, **kw) -> Response:
    response = _StreamResponse(chunks, **kw)
    if on_close is not None:
        response.call_on_close(on_close)
    return response


def sse_response(chunks, on_close=None) -> Response:
    """chunks: the route's str frames; on_close: runs once the response ends, however it ends."""
    # No buffering on the way: each frame is written as soon as it is yielded.
    return _stream(chunks, on_close, mimetype="text/event-stream",
                   headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def ndjson_response(chunks, on_close=None) -> Response:
    return _stream(chunks, on_close, mimetype="application/x-ndjson", headers={"Cache-Control": "no-cache"})


def sse_event(obj: dict) -> str:
    """An SSE frame named by its payload's type, as the Responses API streams them."""
    return f"event: {obj['type']}\n{sse_line(obj)}"
