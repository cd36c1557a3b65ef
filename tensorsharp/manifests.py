"""Models made from others (Ollama's /api/create and /api/copy): a name, the GGUF file it runs,
and the system prompt, chat template and default options it adds. One JSON file per name under
config.manifests_dir(); the model files themselves stay where they are."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tensorsharp import config
from tensorsharp.errors import ModelStoreError

_NAME = re.compile(r"[a-z0-9][a-z0-9._/-]*(:[a-z0-9][a-z0-9._-]*)?")


def canonical(name: str) -> str:
    """A model name as listed: lower case, with Ollama's default tag ":latest" when it has none."""
    name = name.strip().lower()
    return name if ":" in name else f"{name}:latest"


def key(name: str) -> str:
    """What two names that mean the same model have in common (":latest" is implied)."""
    name = name.strip().lower()
    return name[: -len(":latest")] if name.endswith(":latest") else name


@dataclass(frozen=True)
class Manifest:
    name: str                      # canonical name
    file: Path                     # the GGUF file it runs
    system: str | None = None      # system prompt used when a request brings none
    template: str | None = None    # Jinja chat template instead of the file's
    parameters: dict = field(default_factory=dict)   # Ollama options under each request's own

    def to_json(self) -> dict:
        return {"name": self.name, "file": str(self.file), "system": self.system, "template": self.template,
                "parameters": self.parameters}


def _path(name: str) -> Path:
    return config.manifests_dir() / (quote(canonical(name), safe="") + ".json")


def check_name(name: str) -> str:
    """The canonical form of a name a client wants to create; ModelStoreError if it cannot be one."""
    name = canonical(name)
    if not _NAME.fullmatch(name) or ".." in name or len(name) > 200:
        raise ModelStoreError(f"invalid model name {name!r}: use letters, digits, '.', '_', '-', '/' "
                              f"and an optional ':tag'")
    return name


def _parse(text: str) -> Manifest:
    data = json.loads(text)
    return Manifest(str(data["name"]), Path(data["file"]), data.get("system"), data.get("template"),
                    dict(data.get("parameters") or {}))


def read(name: str) -> Manifest | None:
    try:
        return _parse(_path(name).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelStoreError(f"the manifest of {name} is unreadable: {e}") from None


def all_manifests() -> list[Manifest]:
    root = config.manifests_dir()
    found = []
    for p in sorted(root.glob("*.json")) if root.is_dir() else ():
        try:
            found.append(_parse(p.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue   # one damaged file must not hide the other models
    return found


def write(manifest: Manifest) -> None:
    path = _path(manifest.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest.to_json()))
    os.replace(tmp, path)


def delete(name: str) -> bool:
    """Removes the manifest of name; False when there is none."""
    try:
        _path(name).unlink()
        return True
    except FileNotFoundError:
        return False
