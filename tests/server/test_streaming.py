"""FrameTemplate: a pre-encoded chunk gives the same bytes as encoding the whole chunk."""
import pytest

from tensorsharp.chat.output import ContentDelta, ThinkingDelta
from tensorsharp.server.protocol import ollama as ol
from tensorsharp.server.protocol import openai as oa
from tensorsharp.server.streaming import FrameTemplate, ndjson_line, sse_line

TEXTS = ["", " the", 'say "hi"', "back\\slash", "tab\tnew\nline\r", "\x00\x1f\x7f", "é 漢字 🙂", "\ud800",
         "\u2028\u2029", "</script>", "\ue000 private \ue001", "{\"content\": \"x\"}"]


@pytest.mark.parametrize("text", TEXTS)
def test_openai_chunks_match_full_encoding(text):
    def make(kind, t):
        return oa.chunk("chatcmpl-1", "smollm2:135m", 1700000000, "fp_1", 2, oa.delta(kind(t)), with_usage=True)
    for kind in (ContentDelta, ThinkingDelta):   # a thinking delta holds its text twice
        template = FrameTemplate(lambda t, kind=kind: make(kind, t), sse_line)
        assert template(text) == sse_line(make(kind, text))


@pytest.mark.parametrize("text", TEXTS)
def test_ollama_lines_with_two_strings_match(text):
    at = "2026-12-06T20:00:00.123456Z"
    template = FrameTemplate(lambda t, when: ol.chat_chunk("m\"odel", [ContentDelta(t)], at=when), ndjson_line, 2)
    assert template(text, at) == ndjson_line(ol.chat_chunk("m\"odel", [ContentDelta(text)], at=at))
    # The strings fill their own places whatever their order in the JSON.
    template = FrameTemplate(lambda when, t: ol.generate_chunk("m", [ContentDelta(t)], at=when), ndjson_line, 2)
    assert template(at, text) == ndjson_line(ol.generate_chunk("m", [ContentDelta(text)], at=at))


def test_a_template_whose_markers_do_not_survive_encodes_in_full():
    # A frame that does not carry the string as a JSON string (here: its length) has no place to
    # fill; the template must still give what the frame would.
    def make(t):
        return {"n": len(t)}
    template = FrameTemplate(make, sse_line)
    assert template("abc") == sse_line({"n": 3})


def _stream_app(frames, closed):
    from flask import Flask
    from tensorsharp.server.streaming import sse_response
    app = Flask(__name__)

    def route_frames():
        try:
            yield from frames
        finally:
            closed.append("frames")

    @app.post("/s")
    def s():
        response = sse_response(route_frames(), on_close=lambda: closed.append("on_close"))
        response.call_on_close(lambda: closed.append("release"))   # as the app's lease release does
        return response
    return app


def _start(app):
    from werkzeug.test import EnvironBuilder
    started = []
    body = app(EnvironBuilder(path="/s", method="POST").get_environ(), lambda *a: started.append(a))
    return body, started


def test_a_streamed_frame_passes_through_no_python_layer_on_its_way_to_the_server():
    # The hub writes every token's frame: between the route's generator and the WSGI server
    # no Python function may run per frame (werkzeug's encoder and ClosingIterator did).
    import sys
    closed = []
    body, started = _start(_stream_app(["data: é\n\n", "data: [DONE]\n\n"], closed))
    assert started[0][0] == "200 OK"
    calls = []
    frames = iter(body)
    sys.setprofile(lambda frame, event, arg: calls.append(frame.f_code.co_name) if event == "call" else None)
    try:
        got = list(frames)
    finally:
        sys.setprofile(None)
    assert got == ["data: é\n\n".encode(), b"data: [DONE]\n\n"]
    assert set(calls) == {"route_frames"}
    body.close()
    assert closed == ["frames", "on_close", "release"]


def test_a_stream_closed_before_its_first_frame_still_runs_its_close_callbacks():
    closed = []
    body, _ = _start(_stream_app(["data: x\n\n"], closed))
    body.close()   # the client left before the first byte: the generator never ran
    assert closed == ["on_close", "release"]


@pytest.mark.parametrize("text", TEXTS)
def test_an_int_value_is_filled_in_as_a_json_number(text):
    from tensorsharp.server.streaming import sse_event

    def make(delta, seq):
        return {"type": "response.output_text.delta", "item_id": "msg_1", "delta": delta, "sequence_number": seq}
    template = FrameTemplate(make, sse_event, 2)
    for seq in (0, 7, 12345):
        assert template(text, seq) == sse_event(make(text, seq))
