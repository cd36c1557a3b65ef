"""Ollama's keep_alive: a Go duration ("5m", "1h30m", "-1s"), a number of seconds, 0 or a negative."""
from __future__ import annotations

import math
import re

FOREVER = math.inf   # a negative keep_alive: loaded until evicted or the server stops

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PIECE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def seconds(value) -> float:
    """value in seconds (FOREVER for a negative one); ValueError when it is neither a number nor
    a duration. Strings of digits alone count as seconds, as Ollama's OLLAMA_KEEP_ALIVE reads them."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"not a duration: {value!r}")
        return FOREVER if value < 0 else float(value)
    if not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r}")
    text = value.strip()
    try:
        return seconds(float(text))
    except ValueError:
        pass
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
    pos, total = 0, 0.0
    for m in _PIECE.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(body) or not body:
        raise ValueError(f"not a duration: {value!r} (write e.g. \"5m\", \"1h30m\", 300 or -1)")
    return FOREVER if sign < 0 and total > 0 else total
