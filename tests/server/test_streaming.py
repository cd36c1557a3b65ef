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
