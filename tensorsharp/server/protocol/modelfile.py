"""Ollama's model management bodies: /api/create (its fields, or a legacy Modelfile text with
FROM / SYSTEM / TEMPLATE / PARAMETER lines), /api/copy, /api/delete, /api/pull and its events."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.fields import Fields

# Options whose values are lists: a Modelfile names them once per value.
_LIST_OPTIONS = {"stop"}
_TRIPLE = '"""'


@dataclass
class Create:
    model: str
    source: str                 # FROM: a model name or a GGUF file path
    system: str | None = None
    template: str | None = None
    parameters: dict = field(default_factory=dict)
    stream: bool = True
    files: dict = field(default_factory=dict)   # file name -> "sha256:<hex>" of a blob uploaded before


def _name(f: Fields, *keys: str) -> str:
    for key in keys:
        value = f.str(key)
        if value:
            return value
    raise ApiError(400, f"'{keys[0]}' is required", param=keys[0])


def _value(text: str):
    """A PARAMETER value as Ollama types it: a number where it reads as one, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text in ("true", "false"):
        return text == "true"
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def parse_modelfile(text: str) -> dict:
    """The commands of a Modelfile as /api/create fields: from, system, template, parameters."""
    out: dict = {"parameters": {}}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        command, _, rest = line.partition(" ")
        command, rest = command.upper(), rest.strip()
        if rest.startswith(_TRIPLE):   # a value over several lines, up to the closing quotes
            body = rest[len(_TRIPLE):]
            while _TRIPLE not in body and i < len(lines):
                body += "\n" + lines[i]
                i += 1
            if _TRIPLE not in body:
                raise ApiError(400, f"modelfile: {command} opens \"\"\" and never closes it", param="modelfile")
            rest = body[: body.index(_TRIPLE)]
        if command == "FROM":
            out["from"] = rest
        elif command in ("SYSTEM", "TEMPLATE"):
            out[command.lower()] = rest
        elif command == "PARAMETER":
            key, _, value = rest.partition(" ")
            if not value.strip():
                raise ApiError(400, f"modelfile: PARAMETER {key} has no value", param="modelfile")
            value = _value(value.strip())
            if key in _LIST_OPTIONS:
                out["parameters"].setdefault(key, []).append(value)
            else:
                out["parameters"][key] = value
        elif command == "LICENSE":
            continue   # informative only
        else:
            raise ApiError(400, f"modelfile: {command} is not supported here (FROM, SYSTEM, TEMPLATE, "
                           f"PARAMETER and LICENSE are)", param="modelfile")
    return out


def parse_create(body: dict) -> Create:
    f = Fields(body)
    model = _name(f, "model", "name")
    fields = parse_modelfile(f.str("modelfile")) if f.str("modelfile") else {"parameters": {}}
    if f.raw("adapters"):
        raise ApiError(400, "LoRA adapters ('adapters') are not supported", param="adapters")
    files = f.raw("files") or {}
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ApiError(400, "'files' must map file names to blob digests (\"sha256:...\")", param="files")
    source = f.str("from") or fields.get("from") or f.str("path") or ""
    if not source and not files:
        raise ApiError(400, "'from' or 'files' is required: a model name, the path of a GGUF file, or "
                       "uploaded blobs", param="from")
    params = f.raw("parameters")
    if params is not None and not isinstance(params, dict):
        raise ApiError(400, "'parameters' must be an object", param="parameters")
    return Create(model, source, f.str("system") or fields.get("system"), f.str("template") or fields.get("template"),
                  {**fields["parameters"], **(params or {})}, f.bool("stream", True), files)


def parse_copy(body: dict) -> tuple[str, str]:
    f = Fields(body)
    return f.str("source", required=True), f.str("destination", required=True)


def parse_name(body: dict) -> tuple[str, bool]:
    """(model, stream) of /api/pull, /api/push and /api/delete bodies, which name it "model" (or "name")."""
    f = Fields(body)
    return _name(f, "model", "name"), f.bool("stream", True)


def pull_layer(digest: str, total: int, completed: int) -> dict:
    """A progress event of /api/pull: Ollama's status names the layer by the start of its digest."""
    return {"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}", "total": total, "completed": completed}


def status(text: str) -> dict:
    return {"status": text}


def is_gguf_path(text: str) -> bool:
    return bool(re.search(r"[/\\]", text)) or text.lower().endswith(".gguf")
