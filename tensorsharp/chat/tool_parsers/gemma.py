"""Gemma tool calls: Gemma has no native format, so a system prompt teaches it the Hermes form,
which the Hermes parser reads."""
from __future__ import annotations

from tensorsharp.chat.tool_parsers import hermes
from tensorsharp.chat.tool_parsers.base import RESULTS_NOTE, Family


def system_prompt(tools: list) -> str:
    # Gemma's template folds the system prompt into the first user turn, so it is worded as a rule
    # for the whole conversation, with one example of the exact form.
    return ("You are an assistant that can call functions. Whenever a function would help answer, "
            "call it instead of guessing. The available functions, described in JSON:\n"
            + hermes.tools_block(tools) + "\n\n"
            "A function call is a JSON object with the function's name and its arguments, written "
            "inside <tool_call></tool_call> tags and nothing else, for example:\n"
            '<tool_call>\n{"name": "<function name>", "arguments": {"<argument>": <value>}}\n</tool_call>\n'
            "Write one such block per call. When no function is needed, answer in plain text. " + RESULTS_NOTE)


FAMILY = Family("gemma", hermes.HermesParser, call_prefix=hermes.FAMILY.call_prefix,
                call_suffix=hermes.FAMILY.call_suffix, arguments_key="arguments", calls_as_array=False,
                system_prompt=system_prompt, markers=hermes.FAMILY.markers,
                call_trigger=hermes.OPEN)
