"""Image preprocessing: pixel values against HF's SigLIP and Gemma 3 image processors (PIL backends)
on images of every format and mode clients send, and malformed data refused with ImageError."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tensorsharp.vision import ImageError
from tensorsharp.vision.preprocess import load_image, to_pixels

LIMITS = dict(max_bytes=1 << 20, max_pixels=4_000_000)
# Both sides compute in float32 from the same uint8 pixels; only the order of rounding may differ.
TOL = 1e-6
SIGLIP = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


def _pattern(w, h, channels=3, seed=0):
    """Smooth gradients plus noise: resampling errors show up, compression keeps it recognisable."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = [(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 3) % 256, (x * y) % 256]
    img = np.stack(base[:channels], axis=-1) + rng.integers(-20, 20, (h, w, channels))
    return np.clip(img, 0, 255).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6   # orientation: rotate 90 degrees clockwise to view
    return _encode(Image.fromarray(_pattern(60, 40)), "JPEG", exif=exif, quality=90)


def _two_frame_gif() -> bytes:
    frames = [Image.fromarray(_pattern(50, 30, seed=s)).convert("P") for s in (1, 2)]
    frames[1] = Image.fromarray(255 - _pattern(50, 30, seed=2)).convert("P")
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


def _palette_with_transparency() -> bytes:
    p = Image.fromarray(_pattern(41, 23)).convert("P")
    p.info["transparency"] = 0
    return _encode(p, "PNG", transparency=0)


IMAGES = {
    "rgb-png": lambda: _encode(Image.fromarray(_pattern(37, 53)), "PNG"),
    "rgba-png": lambda: _encode(Image.fromarray(_pattern(64, 48, 4)), "PNG"),
    "palette-transparency-png": _palette_with_transparency,
    "gray-png": lambda: _encode(Image.fromarray(_pattern(70, 30)[..., 0]), "PNG"),
    "gray16-png": lambda: _encode(Image.fromarray(_pattern(30, 20)[..., 0].astype(np.uint16) * 200), "PNG"),
    "rgb-jpeg": lambda: _encode(Image.fromarray(_pattern(900, 700)), "JPEG", quality=85),
    "cmyk-jpeg": lambda: _encode(Image.fromarray(_pattern(40, 40, 4), "CMYK"), "JPEG"),
    "exif-rotated-jpeg": _exif_rotated_jpeg,
    "lossy-webp": lambda: _encode(Image.fromarray(_pattern(80, 60)), "WEBP", quality=80),
    "alpha-webp": lambda: _encode(Image.fromarray(_pattern(33, 65, 4)), "WEBP", lossless=True),
    "tiny-png": lambda: _encode(Image.fromarray(_pattern(3, 2)), "PNG"),
    "animated-gif": _two_frame_gif,
}


def _hf_input(data: bytes) -> Image.Image:
    """What HF's processor is given: the decoded first frame turned upright, alpha still in it."""
    from PIL import ImageOps
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("name", sorted(IMAGES))
@pytest.mark.parametrize("processor,resample,size,norm", [("Gemma3ImageProcessorPil", "bilinear", 64, SIGLIP),
                                                          ("Gemma3ImageProcessorPil", "bilinear", 896, SIGLIP),
                                                          ("SiglipImageProcessorPil", "bicubic", 48, CLIP)])
def test_pixels_match_hf_image_processor(name, processor, resample, size, norm):
    transformers = pytest.importorskip("transformers", minversion="5")
    data = IMAGES[name]()
    proc = getattr(transformers, processor)(size={"height": size, "width": size}, image_mean=list(norm[0]),
                                            image_std=list(norm[1]))
    want = proc(images=_hf_input(data), return_tensors="np")["pixel_values"][0]
    got = to_pixels(load_image(data, **LIMITS), size, *norm, resample=resample)
    assert got.shape == want.shape == (3, size, size) and got.dtype == np.float32
    assert np.abs(got - want).max() <= TOL


def test_exif_orientation_turns_the_image_upright():
    image = load_image(_exif_rotated_jpeg(), **LIMITS)
    assert image.size == (40, 60)   # stored 60x40, shown rotated


def test_first_gif_frame_is_used():
    data = _two_frame_gif()
    first = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(np.asarray(load_image(data, **LIMITS)), first)


def test_transparent_pixels_become_white():
    rgba = np.zeros((4, 4, 4), np.uint8)   # fully transparent black
    image = load_image(_encode(Image.fromarray(rgba), "PNG"), **LIMITS)
    assert image.mode == "RGB" and np.all(np.asarray(image) == 255)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (the data after it does not matter)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = b"IDAT" + zlib.compress(b"\0" * 16)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat)))


def _bomb() -> bytes:
    """3000x3000 pixels in a few kilobytes: within Pillow's limit, over ours."""
    return _encode(Image.new("1", (3000, 3000)), "PNG")


def _corrupt_png() -> bytes:
    data = bytearray(IMAGES["rgb-png"]())
    data[len(data) // 2:len(data) // 2 + 32] = b"\xff" * 32
    return bytes(data)


BAD = {
    "empty": (b"", "empty"),
    "not an image": (b"hello, this is text, not a picture", "not an image"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not an image"),
    "bmp": (_encode(Image.new("RGB", (4, 4)), "BMP"), "not an image"),
    "truncated png": (IMAGES["rgb-png"]()[:200], "cannot be decoded"),
    "truncated jpeg": (IMAGES["rgb-jpeg"]()[:3000], "cannot be decoded"),
    "corrupt png": (_corrupt_png(), "cannot be decoded"),
    "zero-size png": (_png_header_only(0, 10), "image"),
    "decompression bomb": (_bomb(), "limit is 4000000 pixels"),
    "header of a giant": (_png_header_only(100_000, 100_000), "pixels"),
    "too many bytes": (b"\x89PNG" + b"\0" * (1 << 20), "limit is 1048576"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_data_is_an_image_error(name):
    data, message = BAD[name]
    with pytest.raises(ImageError, match=message):
        load_image(data, **LIMITS)
