"""Models for tests and tools: real ones from the store, and fake wheel-packed ones for pull tests."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import zipfile
from pathlib import Path

from tensorsharp import store


def model_path(name: str) -> Path:
    """Path of a known model's verified file, pulled first if the cache lacks it. name: its
    registry name or alias, or its file name (as llama.cpp's reference data names models)."""
    model = next((m for m in store.known_models() if m.file == name), None) or store.lookup(name)
    return store.ensure(model)


def write_wheel(directory: Path, package: str, version: str, members: dict[str, bytes]) -> Path:
    """A minimal pure-Python wheel holding `members`, as pip expects to find one."""
    dist = re.sub(r"[-_.]+", "_", package)
    info = f"{dist}-{version}.dist-info"
    files = dict(members)
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tensorsharp-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = Path(directory) / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def fake_model(directory: Path, name: str, payloads: list[bytes], expected: bytes | None = None,
               aliases: tuple[str, ...] = ()) -> dict:
    """Write one wheel per payload into directory; return the model's registry entry.

    The entry's size and sha256 describe `expected` (default: the payloads joined in order),
    so passing something else makes a model whose wheels do not match its registry entry."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    file = f"{slug}.gguf"
    parts = []
    for i, payload in enumerate(payloads, start=1):
        package, version = f"tsfake-{slug}-part{i}", "1.0.0"
        top = re.sub(r"[-_.]+", "_", package)
        member = f"{top}/data/{file}.part{i - 1:02d}"
        # A decoy first member, as in the real wheels, so the right member has to be picked.
        write_wheel(directory, package, version, {f"{top}/__init__.py": b"", member: payload})
        parts.append({"package": package, "version": version, "member": member})
    whole = b"".join(payloads) if expected is None else expected
    return {"name": name, "aliases": list(aliases), "file": file, "size": len(whole),
            "sha256": hashlib.sha256(whole).hexdigest(), "parts": parts}


def write_registry(path: Path, entries: list[dict]) -> Path:
    """A TENSORSHARP_REGISTRY file holding `entries`."""
    Path(path).write_text(json.dumps(entries, indent=1))
    return Path(path)
