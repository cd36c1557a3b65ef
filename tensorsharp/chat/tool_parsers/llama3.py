"""Llama 3.x tool calls: a bare `{"name": ..., "parameters": {...}}` answer, or JSON after `<|python_tag|>`."""
from __future__ import annotations

import json

from tensorsharp.chat.tool_parsers.base import RESULTS_NOTE, WHITESPACE, Block, Family, JsonCallParser

PYTHON_TAG = "<|python_tag|>"


class Llama3Parser(JsonCallParser):
    """A JSON object that opens the answer is a call if its keys are a call's keys; otherwise it is
    content, and only <|python_tag|> can start a call later. Text after the tag that is no JSON
    call (code for a built-in tool) is content, with the tag."""

    BLOCKS = (Block(PYTHON_TAG),)
    BETWEEN_CALLS = WHITESPACE + ";"  # Llama 3.2 separates parallel calls with ";"


def system_prompt(tools: list) -> str:
    return ("You have access to the following functions, described in JSON:\n"
            + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools) + "\n\n"
            "To call a function, answer with only a JSON object in the format "
            '{"name": "<function name>", "parameters": {"<argument>": <value>}} and nothing else. '
            "If no function is needed, answer normally. " + RESULTS_NOTE)


FAMILY = Family("llama3", Llama3Parser, call_prefix="", call_suffix="", arguments_key="parameters",
                calls_as_array=False, system_prompt=system_prompt, markers=(PYTHON_TAG,),
                call_trigger=PYTHON_TAG)
