"""Images end to end: a `tensorsharp serve` process on a tiny random gemma3 model with a tiny random
projector beside it (paired automatically), asked through the official ollama and openai clients
and the web UI's upload + chat; image tokens in the prompt counts, KV reuse across turns that keep
or change the image, and malformed images of every kind refused with a 400 in each dialect."""
import base64
import io
import struct
import zlib

import numpy as np
import ollama
import openai
import pytest
import requests
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5")

from tensorsharp.chat.template import ChatTemplate  # noqa: E402
from tensorsharp.gguf import GGUFFile  # noqa: E402
from tensorsharp.testing import tiny_gguf  # noqa: E402
from tensorsharp.testing.server import running, serve_args, sse_events  # noqa: E402
from tensorsharp.testing.tiny_vision import write_tiny_projector  # noqa: E402
from tensorsharp.tokenizer import Tokenizer  # noqa: E402

MODEL = "tiny-gemma3.gguf"
N_IMAGE = 16            # the tiny projector's embeddings per image
MAX_IMAGE_BYTES = 200_000
BEFORE, AFTER = "\n\n<start_of_image>", "<end_of_image>\n\n"   # gemma3's wrap, as HF's processor writes it


def _png(seed: int, size=(24, 20)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(_png(seed, (200, 150)))).save(buf, "JPEG")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("vision")
    model = tiny_gguf.write_gemma3_chat_model(d / MODEL, seed=1, sliding_window=64)
    write_tiny_projector(d / "mmproj-tiny-gemma3.gguf", n_embd_text=128, seed=2)
    return d, model


@pytest.fixture(scope="module")
def base(files):
    d, model = files
    with running(serve_args(str(model), "--ctx", "256", "--parallel", "1", "--threads", "1"), d,
                 env={"TENSORSHARP_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES), "TENSORSHARP_HOME": str(d / "home"),
                      "TENSORSHARP_CACHE_SLOTS": "1"}) as url:
        yield url


@pytest.fixture(scope="module")
def expected(files):
    """Prompt counts computed here, without the server: the whole rendered text with HF's image
    wrap, tokenized at once, plus the image's embedding positions."""
    f = GGUFFile(files[1])
    tok = Tokenizer.from_metadata(f.metadata)
    template = ChatTemplate.for_model(f.metadata, tok)

    def count(messages, text_before_image: str | None = None):
        text = template.render(messages)
        if text_before_image is None:
            return len(tok.encode(text, add_special=True, parse_special=True))
        at = text.index(text_before_image) + len(text_before_image)
        whole = text[:at] + BEFORE + AFTER + text[at:]
        return len(tok.encode(whole, add_special=True, parse_special=True)) + N_IMAGE

    def image_start(messages, text_before_image: str):
        text = template.render(messages)
        at = text.index(text_before_image) + len(text_before_image)
        return len(tok.encode(text[:at] + BEFORE, add_special=True, parse_special=True))

    count.image_start = image_start
    return count


OPTIONS = {"num_predict": 4, "temperature": 0}


def test_vision_is_reported(base):
    show = requests.post(base + "/api/show", json={"model": MODEL}).json()
    assert "vision" in show["capabilities"]
    assert "vision" in requests.get(base + "/v1/models").json()["data"][0]["capabilities"]
    assert requests.get(base + "/api/models").json()["models"][0]["supportsImages"] is True


def test_ollama_chat_and_generate_count_the_image_tokens(base, expected):
    client = ollama.Client(host=base)
    r = client.chat(model=MODEL, messages=[{"role": "user", "content": "What is this?", "images": [_png(1)]}],
                    options=OPTIONS)
    # Ollama places a message's images before its text.
    want = expected([{"role": "user", "content": "What is this?"}], "<start_of_turn>user\n")
    assert r.prompt_eval_count == want
    assert r.eval_count > 0
    g = client.generate(model=MODEL, prompt="What is this?", images=[_jpeg(2)], options=OPTIONS)
    assert g.prompt_eval_count == want


def test_openai_image_url_counts_the_image_tokens(base, expected):
    client = openai.OpenAI(base_url=base + "/v1", api_key="none")
    r = client.chat.completions.create(model=MODEL, max_tokens=4, temperature=0, messages=[{"role": "user", "content": [
        {"type": "text", "text": "Look: "},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _b64(_png(3))}},
        {"type": "text", "text": " What is it?"}]}])
    want = expected([{"role": "user", "content": "Look:  What is it?"}], "Look: ")
    assert r.usage.prompt_tokens == want
    assert r.choices[0].finish_reason == "length"


def _ollama_chat(base, messages):
    r = requests.post(base + "/api/chat", json={"model": MODEL, "messages": messages, "stream": False,
                                                "options": OPTIONS})
    assert r.status_code == 200, r.text
    return r.json()


def test_second_turn_reuses_the_image_and_a_new_image_invalidates_from_it(base, expected):
    first = [{"role": "user", "content": "Describe it.", "images": [_b64(_png(4))]}]
    r1 = _ollama_chat(base, first)
    follow = first + [r1["message"], {"role": "user", "content": "And its colour?"}]
    r2 = _ollama_chat(base, follow)
    start = expected.image_start([{"role": "user", "content": "Describe it."}], "<start_of_turn>user\n")
    assert r2["prompt_cache_hit_tokens"] >= r1["prompt_eval_count"] > start + N_IMAGE
    changed = [{**follow[0], "images": [_b64(_png(5))]}] + follow[1:]
    r3 = _ollama_chat(base, changed)
    assert r3["prompt_cache_hit_tokens"] == start
    assert r3["prompt_eval_count"] == r2["prompt_eval_count"]


def test_web_ui_upload_then_chat(base, expected):
    up = requests.post(base + "/api/upload", files={"file": ("photo.png", _png(6), "image/png")}).json()
    turn = [{"role": "user", "content": "What is in the photo?", "images": [up["id"]]}]
    frames = sse_events(requests.post(base + "/api/chat", json={"messages": turn, "maxTokens": 4}).content)
    session = frames[0]["sessionId"]
    done = frames[-1]
    assert done["done"] is True
    assert done["promptTokens"] == expected([{"role": "user", "content": "What is in the photo?"}],
                                            "<start_of_turn>user\n")
    reply = "".join(f.get("token", "") for f in frames)
    history = turn + [{"role": "assistant", "content": reply}, {"role": "user", "content": "Sure?"}]
    frames = sse_events(requests.post(base + "/api/chat", json={"messages": history, "maxTokens": 4,
                                                                 "sessionId": session}).content)
    start = expected.image_start([{"role": "user", "content": "What is in the photo?"}], "<start_of_turn>user\n")
    assert frames[-1]["kvReusedTokens"] > start + N_IMAGE


def _png_header(width: int, height: int) -> bytes:
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buf, "PNG")   # 64M pixels in a few kilobytes
    return buf.getvalue()


BAD_DATA = {
    "not an image": (b"just some text", "not an image"),
    "truncated png": (_png(7)[:300], "cannot be decoded"),
    "truncated jpeg": (_jpeg(8)[:1500], "cannot be decoded"),
    "decompression bomb": (_bomb(), "pixels"),
    "zero-size": (_png_header(0, 0), "image"),
    "huge bytes": (_png(9) + b"\0" * MAX_IMAGE_BYTES, f"limit is {MAX_IMAGE_BYTES}"),
}


def _ollama(base, b64: str):
    return requests.post(base + "/api/chat", json={"model": MODEL, "stream": False, "options": OPTIONS,
                                                   "messages": [{"role": "user", "content": "?", "images": [b64]}]})


def _openai(base, url: str):
    return requests.post(base + "/v1/chat/completions", json={"model": MODEL, "max_tokens": 2, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})


def _webui(base, data: bytes):
    up = requests.post(base + "/api/upload", files={"file": ("x.png", data, "image/png")}).json()
    return requests.post(base + "/api/chat", json={"messages": [{"role": "user", "content": "?",
                                                                 "images": [up["id"]]}], "maxTokens": 2})


@pytest.mark.parametrize("name", sorted(BAD_DATA))
def test_malformed_images_are_400_in_every_dialect(base, name):
    data, message = BAD_DATA[name]
    for r, shape in ((_ollama(base, _b64(data)), "plain"),
                     (_openai(base, "data:image/png;base64," + _b64(data)), "openai"),
                     (_webui(base, data), "plain")):
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        text = error["message"] if shape == "openai" else error
        assert message in text, text
        if shape == "openai":
            assert error["type"] == "invalid_request_error" and error["code"] == "invalid_image"
    assert _ollama(base, _b64(_png(10))).status_code == 200   # and the server keeps serving


def test_malformed_image_references_are_400(base):
    bad_b64 = _ollama(base, "not base64 at all!")
    assert bad_b64.status_code == 400 and "not valid base64" in bad_b64.json()["error"]
    cases = {"data:text/plain;base64," + _b64(_png(11)): "media type 'text/plain'",
             "https://example.com/cat.png": "remote image URLs are not fetched",
             "data:image/png," + _b64(_png(11)): "base64 data URI",
             "data:image/png;base64,%%%": "not valid base64"}
    for url, message in cases.items():
        r = _openai(base, url)
        assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
    r = requests.post(base + "/api/chat", json={"messages": [{"role": "user", "content": "?", "images": ["nope"]}]})
    assert r.status_code == 400 and "unknown upload id" in r.json()["error"]
    assert _openai(base, "data:image/png;base64," + _b64(_png(12))).status_code == 200


def test_projector_pairing_explicit_off_and_mismatched(files, tmp_path):
    from tensorsharp.errors import TensorSharpError
    from tensorsharp.server.model import ServedModel

    d, model = files
    served = ServedModel.load(str(model), n_ctx=64, n_threads=1, mmproj="none")
    try:
        assert not served.supports_images and "vision" not in served.capabilities
    finally:
        served.close()
    explicit = write_tiny_projector(tmp_path / "elsewhere.gguf", n_embd_text=128, seed=3)["path"]
    served = ServedModel.load(str(model), n_ctx=64, n_threads=1, mmproj=str(explicit))
    try:
        assert served.images.path == explicit and "vision" in served.capabilities
    finally:
        served.close()
    wide = write_tiny_projector(tmp_path / "wide.gguf", n_embd_text=256, seed=3)["path"]
    with pytest.raises(TensorSharpError, match="not a pair"):
        ServedModel.load(str(model), n_ctx=64, n_threads=1, mmproj=str(wide))
