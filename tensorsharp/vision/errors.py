"""The error an image that cannot be used raises (the server answers it with HTTP 400)."""
from tensorsharp.errors import TensorSharpError


class ImageError(TensorSharpError):
    """An image is malformed, truncated, too large or not an image at all."""
