"""Images: llama.cpp's multimodal projector files and the C image encoder they load into."""
from tensorsharp.vision.errors import ImageError
from tensorsharp.vision.projector import VisionEncoder, find_projector, load_projector

__all__ = ["ImageError", "VisionEncoder", "find_projector", "load_projector"]
