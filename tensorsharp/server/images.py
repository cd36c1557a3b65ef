"""A request's images into prompt positions: decoded and checked, encoded once per content (a small
LRU of embeddings, so a conversation's later turns do not encode its image again), and spliced into
the prompt's token ids where the template put each image's marker."""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from tensorsharp.chat.template import ImageFormat
from tensorsharp.engine.request import PromptImage
from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.common import IMAGE_MARKER, Image
from tensorsharp.vision import ImageError, VisionEncoder
from tensorsharp.vision.preprocess import load_image, resample_for, to_pixels


class ImageEmbedder:
    """A projector with the limits its inputs must keep and the embeddings of recent images."""

    def __init__(self, encoder: VisionEncoder, path: Path, fmt: ImageFormat, max_bytes: int, max_pixels: int,
                 cache_size: int = 16):
        self.encoder = encoder
        self.path = path          # the projector file
        self.format = fmt
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, image: Image) -> np.ndarray:
        """(n_tokens, n_embd) f32 embeddings of an image; ImageError when it cannot be used."""
        with self._lock:
            embd = self._cache.get(image.digest)
            if embd is not None:
                self._cache.move_to_end(image.digest)
                return embd
        # Called on the request's worker thread (generation._prepare), never on the hub.
        embd = self._encode(image.data)
        with self._lock:
            self._cache[image.digest] = embd
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return embd

    def _encode(self, data: bytes) -> np.ndarray:
        e = self.encoder
        picture = load_image(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
        pixels = to_pixels(picture, e.image_size, e.image_mean, e.image_std, resample_for(e.projector_type))
        return e.encode(pixels)


def splice(served, text: str, images: list[Image]) -> tuple[list[int], list[PromptImage]]:
    """Token ids of a rendered prompt whose IMAGE_MARKERs stand for images (-1 at each image
    position, wrapped in the projector's text), and the PromptImages that fill those positions."""
    parts = text.split(IMAGE_MARKER)
    if len(parts) - 1 != len(images):
        raise ApiError(400, f"the rendered prompt places {len(parts) - 1} of the {len(images)} images "
                       f"(the chat template dropped a message that holds one)", param="messages")
    emb = served.images
    fmt = emb.format
    embeddings = []
    for i, image in enumerate(images):
        try:
            embeddings.append(emb.embed(image))
        except ImageError as e:
            raise ApiError(400, f"image {i + 1}: {e}", param="images", code="invalid_image") from None
    ids = served.tokenize_prompt(parts[0] + fmt.before)
    placed = []
    for k, embd in enumerate(embeddings):
        placed.append(PromptImage(len(ids), embd, images[k].digest, fmt.bidirectional))
        ids += [-1] * len(embd)
        tail = fmt.after + parts[k + 1] + (fmt.before if k + 1 < len(images) else "")
        ids += served.tokenizer.encode(tail, add_special=False, parse_special=True)
    return ids, placed
