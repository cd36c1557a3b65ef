"""Streamed response bodies: SSE frames (OpenAI, web UI) and NDJSON lines (Ollama)."""
from __future__ import annotations

import json

from flask import Response
from werkzeug.wsgi import ClosingIterator


def sse_line(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


SSE_DONE = "data: [DONE]\n\n"


def ndjson_line(obj) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


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
