"""Uploaded files: kept under a server-owned folder with generated names, within a size limit."""
from __future__ import annotations

import mimetypes
import os
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from tensorsharp.server.errors import ApiError

_CHUNK = 1 << 16


@dataclass
class Upload:
    id: str
    name: str        # the client's file name, for display only; never used as a path
    size: int
    mime_type: str
    path: Path

    def describe(self) -> dict:
        return {"id": self.id, "name": self.name, "size": self.size, "mimeType": self.mime_type}


_GENERATED = re.compile(r"[0-9a-f]{32}")


class Uploads:
    """At most max_files files and max_total bytes kept, counting those earlier runs left in the
    folder; saving one more deletes the oldest."""

    def __init__(self, root: Path, max_bytes: int, max_files: int = 256, max_total: int = 1 << 30):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.max_total = max_total
        self._items: OrderedDict[str, Upload] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()
        self._adopt()

    def _adopt(self) -> None:
        """Files an earlier run saved count against the limits, oldest first, so restarts cannot
        pile them up without bound."""
        try:
            entries = [(p.stat(), p) for p in self.root.iterdir() if p.is_file() and _GENERATED.fullmatch(p.name)]
        except OSError:
            return
        for st, p in sorted(entries, key=lambda e: e[0].st_mtime):
            self._items[p.name] = Upload(p.name, p.name, st.st_size, "application/octet-stream", p)
            self._total += st.st_size
        self._evict()

    def _evict(self) -> None:
        while self._items and (len(self._items) > self.max_files or self._total > self.max_total):
            _, old = self._items.popitem(last=False)
            self._total -= old.size
            old.path.unlink(missing_ok=True)

    def save(self, stream, filename: str | None, mimetype: str | None) -> Upload:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        uid = uuid.uuid4().hex
        path = self.root / uid
        size = 0
        try:
            with open(path, "xb") as out:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ApiError(413, f"upload is larger than the limit of {self.max_bytes} bytes")
                    out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        name = os.path.basename(filename or "") or uid
        mime = mimetype if mimetype and mimetype != "application/octet-stream" else None
        mime = mime or mimetypes.guess_type(name)[0] or "application/octet-stream"
        up = Upload(uid, name[:255], size, mime, path)
        with self._lock:
            self._items[uid] = up
            self._total += size
            self._evict()
        return up

    def get(self, uid: str) -> Upload | None:
        with self._lock:
            return self._items.get(uid)
