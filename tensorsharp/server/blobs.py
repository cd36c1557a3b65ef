"""Ollama's blobs: files a client uploads by their sha256 (POST /api/blobs/:digest) so that
/api/create can name them in `files`. Kept as <root>/sha256-<hex>, as Ollama names them; a
store model whose sha256 the registry knows counts as present too, so a client that asks first
(HEAD) does not upload a file the server already holds."""
from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from tensorsharp.server.errors import ApiError

_DIGEST = re.compile(r"sha256[:-]([0-9a-f]{64})")
_CHUNK = 1 << 20


def parse_digest(text: str) -> str:
    """The hex of a "sha256:<64 hex>" digest (Ollama also takes "sha256-"); 400 otherwise."""
    m = _DIGEST.fullmatch(text)
    if m is None:
        raise ApiError(400, f"invalid digest format {text!r}: expected sha256:<64 hex digits>", param="digest")
    return m.group(1)


class Blobs:
    """known(hex) -> a file the server already holds with that sha256 (the store's models)."""

    def __init__(self, root: Path, known=lambda hex_: None):
        self.root = Path(root)
        self._known = known

    def path(self, hex_: str) -> Path | None:
        """The file holding the blob, or None."""
        own = self.root / f"sha256-{hex_}"
        return own if own.is_file() else self._known(hex_)

    def save(self, stream, hex_: str) -> Path:
        """Writes the stream to the blob of that digest, hashing as it goes; 400 (and nothing
        kept) when the bytes hash to another digest."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".partial-{uuid.uuid4().hex}"
        h = hashlib.sha256()
        try:
            with open(tmp, "xb") as out:
                while chunk := stream.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != hex_:
                raise ApiError(400, f"digest mismatch: the body is sha256:{h.hexdigest()}, not sha256:{hex_}",
                               param="digest")
            final = self.root / f"sha256-{hex_}"
            os.replace(tmp, final)
            return final
        finally:
            tmp.unlink(missing_ok=True)
