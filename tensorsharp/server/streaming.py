"""Streamed response bodies: SSE frames (OpenAI, web UI) and NDJSON lines (Ollama)."""
from __future__ import annotations

import json

from flask import Response


def sse_line(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


SSE_DONE = "data: [DONE]\n\n"


def ndjson_line(obj) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def sse_response(chunks) -> Response:
    # No buffering on the way: each frame is written as soon as it is yielded.
    return Response(chunks, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def ndjson_response(chunks) -> Response:
    return Response(chunks, mimetype="application/x-ndjson", headers={"Cache-Control": "no-cache"})
