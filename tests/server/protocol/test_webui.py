"""Web UI protocol: a token's frames are the JSON of their fields, whatever the text holds."""
from tensorsharp.chat.output import ContentDelta, ThinkingDelta
from tensorsharp.server.protocol.webui import delta_frames
from tensorsharp.server.streaming import sse_line

TEXTS = ["", " word", 'a "quoted" \\ path', "line\nbreak\ttab\x00\x1f", "é中🙂", "\ue000\ue001 </script>"]


def test_delta_frames_are_the_fields_json_encoded():
    for text in TEXTS:
        assert delta_frames([ContentDelta(text), ThinkingDelta(text)]) == [
            sse_line({"token": text}), sse_line({"thinking": text})]
    assert delta_frames([object()]) == []
