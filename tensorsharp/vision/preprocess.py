"""Image bytes into the encoder's input: decoded with Pillow within limits, upright, RGB, resized and
normalized exactly as HF's SigLIP / Gemma 3 image processors do it."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from tensorsharp.vision.errors import ImageError

# What clients send; anything else (SVG, TIFF, PSD, ...) is refused before a decoder runs on it.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF")


def load_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """The first frame of a PNG, JPEG, WebP or GIF as an RGB image, turned upright by its EXIF
    orientation, transparency composited onto white (as HF's convert_to_rgb does). ImageError
    when the data is empty, too large, not one of those formats, truncated or corrupt, or has more
    than max_pixels pixels (checked from the header, before anything is decoded)."""
    if not data:
        raise ImageError("the image is empty")
    if len(data) > max_bytes:
        raise ImageError(f"the image is {len(data)} bytes; the limit is {max_bytes}")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.UnidentifiedImageError:
        raise ImageError(f"the data is not an image in one of the formats {', '.join(FORMATS)}") from None
    except Image.DecompressionBombError as e:   # Pillow's own, far higher, pixel limit
        raise ImageError(f"the image has too many pixels: {e}") from None
    except Exception as e:   # a header Pillow cannot parse: any error is the file's
        raise ImageError(f"the image header is corrupt: {e}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"the image is {width}x{height} pixels")
    if width * height > max_pixels:
        raise ImageError(f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    try:
        image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except Exception as e:   # truncated or corrupt data: decoders raise OSError, SyntaxError, ValueError ...
        raise ImageError(f"the {image.format} image cannot be decoded: {e}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def resample_for(projector_type: str) -> str:
    """The filter the model's HF image processor resizes with: Gemma3ImageProcessor's bilinear, else
    the bicubic of SigLIP's and CLIP's processors (LLaVA)."""
    return "bilinear" if projector_type == "gemma3" else "bicubic"


def to_pixels(image: Image.Image, size: int, mean, std, resample: str = "bilinear") -> np.ndarray:
    """(3, size, size) float32: squashed to size x size with Pillow's filter (Gemma 3's processor
    resamples bilinearly, SigLIP's and CLIP's bicubically), scaled to [0, 1] and normalized per
    channel, step by step as HF's image processors compute it."""
    resized = image.convert("RGB").resize((size, size), resample=RESAMPLE[resample])
    x = (np.asarray(resized, dtype=np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
