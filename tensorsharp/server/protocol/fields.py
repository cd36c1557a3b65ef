"""Typed reads from request JSON: each wrong type or value is a 400 that names the field."""
from __future__ import annotations

import base64
import binascii
import json
import math

from tensorsharp.server.errors import ApiError


MAX_DEPTH = 64   # nesting of arrays and objects in a request body; a deep tool schema uses ~25


def parse_json(data: bytes) -> dict:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    if not data.strip():
        raise ApiError(400, "request body is empty; expected a JSON object")
    try:
        body = json.loads(data, strict=False)   # raw newlines in strings: `base64` output pasted into JSON
    except RecursionError:
        raise ApiError(400, f"request body nests arrays or objects deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"request body must be a JSON object, not {_kind(body)}")
    _check_tree(body)
    return body


def _check_tree(body: dict) -> None:
    """Depth within MAX_DEPTH (later recursive walks, schema compilers among them, stay in their
    stack) and strings that are text: JSON's \\ud800 escapes can spell a lone surrogate, which
    no UTF-8 output can carry."""
    stack = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ApiError(400, f"request body nests arrays or objects deeper than {MAX_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            for text in (key, item):
                if isinstance(text, str) and not _is_text(text):
                    raise ApiError(400, f"request body holds a string with an unpaired surrogate "
                                   f"({json.dumps(text[:40])}...); strings must be valid Unicode text")
            if isinstance(item, (dict, list)):
                stack.append((item, depth + 1))


def _is_text(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def base64_bytes(text: str, name: str) -> bytes:
    """The bytes a base64 string holds (line breaks allowed), or a 400 naming the field."""
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"'{name}' is not valid base64", param=name) from None
    if not data:
        raise ApiError(400, f"'{name}' is empty", param=name)
    return data


def _kind(value) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


class Fields:
    """One JSON object; null counts as absent, as OpenAI and Ollama clients send unset fields."""

    def __init__(self, obj, path: str = ""):
        if not isinstance(obj, dict):
            raise ApiError(400, f"'{path or 'body'}' must be an object, not {_kind(obj)}", param=path or None)
        self.obj = obj
        self.path = path

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return self.obj.get(key) is not None

    def raw(self, key: str, default=None):
        value = self.obj.get(key)
        return default if value is None else value

    def _bad(self, key: str, want: str, value) -> ApiError:
        return ApiError(400, f"'{self.name(key)}' must be {want}, not {_kind(value)}", param=self.name(key))

    def _range(self, key: str, value, lo, hi):
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if lo is not None and hi is not None:
                want = f"between {lo} and {hi}"
            else:
                want = f">= {lo}" if lo is not None else f"<= {hi}"
            raise ApiError(400, f"'{self.name(key)}' must be {want}, got {value}", param=self.name(key))
        return value

    def str(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.obj.get(key)
        if value is None:
            if required:
                raise ApiError(400, f"'{self.name(key)}' is required", param=self.name(key))
            return default
        if not isinstance(value, str):
            raise self._bad(key, "a string", value)
        return value

    def int(self, key: str, default: int | None = None, lo: int | None = None, hi: int | None = None):
        value = self.obj.get(key)
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an integer", value)
        return self._range(key, value, lo, hi)

    def float(self, key: str, default: float | None = None, lo: float | None = None, hi: float | None = None):
        value = self.obj.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self._bad(key, "a finite number", value)
        return self._range(key, float(value), lo, hi)

    def bool(self, key: str, default: bool | None = None) -> bool | None:
        value = self.obj.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._bad(key, "true or false", value)
        return value

    def list(self, key: str, default: list | None = None) -> list | None:
        value = self.obj.get(key)
        if value is None:
            return default
        if not isinstance(value, list):
            raise self._bad(key, "an array", value)
        return value

    def messages(self, roles: set[str]) -> list[tuple[int, "Fields", str]]:
        """The non-empty "messages" array as (index, fields, role), each role one of roles."""
        raw = self.list("messages")
        if raw is None:
            raise ApiError(400, "'messages' is required", param="messages")
        if not raw:
            raise ApiError(400, "'messages' must not be empty", param="messages")
        out = []
        for i, item in enumerate(raw):
            m = Fields(item, self.name(f"messages[{i}]"))
            role = m.str("role", required=True)
            if role not in roles:
                raise ApiError(400, f"'messages[{i}].role' must be one of {sorted(roles)}, got {role!r}",
                               param=f"messages[{i}].role")
            out.append((i, m, role))
        return out

    def tool_calls(self, key: str = "tool_calls") -> list[dict] | None:
        """A message's earlier tool calls: objects whose "function" names the tool (a string) and
        gives its arguments as an object or a JSON string."""
        calls = self.list(key)
        for j, raw in enumerate(calls or ()):
            call = Fields(raw, self.name(f"{key}[{j}]"))
            fn = call.fields("function")
            if fn is None:
                raise ApiError(400, f"'{call.name('function')}' is required", param=call.name("function"))
            fn.str("name", required=True)
            args = fn.raw("arguments")
            if args is not None and not isinstance(args, (str, dict)):
                raise fn._bad("arguments", "an object or a JSON string", args)
        return calls

    def fields(self, key: str) -> "Fields | None":
        value = self.obj.get(key)
        return None if value is None else Fields(value, self.name(key))

    def strings(self, key: str) -> list[str]:
        """A string or an array of strings (stop sequences), as a list."""
        value = self.obj.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise self._bad(key, "a string or an array of strings", value)
