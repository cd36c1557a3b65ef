"""The fallback for models with no known tool-call format: a JSON call object (or array of them)
as the whole answer, or inside a fenced ```json block anywhere in it."""
from __future__ import annotations

import json

from tensorsharp.chat.tool_parsers.base import RESULTS_NOTE, Block, Family, JsonCallParser


class GenericParser(JsonCallParser):
    """Without a marker, only JSON whose keys are a call's keys (name plus arguments or
    parameters, optionally nested under "function") counts as a call; other JSON is content."""

    BLOCKS = (Block("```json", "```", bare=True),)


def system_prompt(tools: list) -> str:
    return ("You can call these functions, described in JSON:\n"
            + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools) + "\n\n"
            "To call a function, answer with only a JSON object, nothing before or after it: "
            '{"name": "<function name>", "arguments": {"<argument>": <value>}}. '
            "If no function is needed, answer in plain text. " + RESULTS_NOTE)


FAMILY = Family("generic", GenericParser, call_prefix="", call_suffix="", arguments_key="arguments",
                calls_as_array=False, system_prompt=system_prompt)
