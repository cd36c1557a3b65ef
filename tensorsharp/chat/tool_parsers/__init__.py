"""Tool-call parsers, one module per wire format, registered by family name."""
from __future__ import annotations

from tensorsharp.chat.tool_parsers import gemma, generic, granite, harmony, hermes, llama3, mistral, phi4
from tensorsharp.chat.tool_parsers.base import Family, ToolParser
from tensorsharp.errors import TensorSharpError

__all__ = ["FAMILIES", "Family", "ToolParser", "UnknownToolFormat", "family"]

FAMILIES: dict[str, Family] = {f.name: f for f in (hermes.FAMILY, llama3.FAMILY, mistral.FAMILY, granite.FAMILY,
                                                     gemma.FAMILY, harmony.FAMILY, phi4.FAMILY,
                                                     generic.FAMILY)}


class UnknownToolFormat(TensorSharpError):
    """A tool-call format was named (--tool-format) that no parser reads."""


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownToolFormat(f"unknown tool-call format {name!r}; known: {', '.join(FAMILIES)}") from None
