"""Structured output: checking a client's JSON schema, the instruction that shows it to the model, and
validating the finished output."""
from __future__ import annotations

import json

import jsonschema

from tensorsharp.engine.constraint import grammar_error, json_schema_grammar
from tensorsharp.errors import TensorSharpError


class SchemaError(TensorSharpError):
    """A response schema is not valid JSON Schema, or uses what constrained decoding cannot enforce (HTTP 400)."""


class OutputValidationError(TensorSharpError):
    """The finished output is not JSON matching the schema, e.g. cut off by max_tokens (HTTP 422)."""


MAX_SCHEMA_VALUES = 20_000   # values in one schema: compiling it to a grammar costs time on the request's path


def check_schema(schema) -> None:
    """Raises SchemaError saying why schema cannot be used for response_format / format."""
    if not isinstance(schema, dict):
        raise SchemaError(f"a JSON schema must be an object, not {type(schema).__name__}")
    if count_values(schema) > MAX_SCHEMA_VALUES:
        raise SchemaError(f"the schema is too large: more than {MAX_SCHEMA_VALUES} values")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
        err = grammar_error(json_schema_grammar(schema))
    except jsonschema.SchemaError as e:
        raise SchemaError(f"not a valid JSON Schema: {e.message}{_at(e.absolute_path)}") from None
    except RecursionError:
        raise SchemaError("the schema nests too deeply to be checked") from None
    if err:
        raise SchemaError(f"the schema uses something constrained decoding cannot enforce: {err}")


def count_values(tree) -> int:
    n, stack = 0, [tree]
    while stack and n <= MAX_SCHEMA_VALUES:
        value = stack.pop()
        n += 1
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return n


def schema_instruction(schema: dict | None) -> str:
    """Text for the system prompt: models follow a schema better when they are shown it (the
    constraint alone guarantees validity, not sensible values)."""
    if not schema:
        return "Respond with a JSON object only, no other text."
    return ("Respond with JSON only, no other text, matching this JSON schema:\n"
            + json.dumps(schema, ensure_ascii=False))


def validate_output(text: str, schema: dict | None):
    """The parsed output, or OutputValidationError saying why it is not valid (schema None: any
    JSON object)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        if _cut_off(text):
            raise OutputValidationError("the output was cut off before its JSON was complete "
                                        "(raise max_tokens)") from None
        raise OutputValidationError(f"the output is not JSON: {e.msg} at character {e.pos}") from None
    if not schema:
        if not isinstance(value, dict):
            raise OutputValidationError(f"the output is JSON but not an object: {text[:80]!r}")
        return value
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    error = jsonschema.exceptions.best_match(cls(schema).iter_errors(value))
    if error is not None:
        raise OutputValidationError(f"the output does not match the schema{_at(error.absolute_path)}: "
                                    f"{error.message}")
    return value


def _at(path) -> str:
    return f" at {'/'.join(map(str, path))}" if path else ""


def _cut_off(text: str) -> bool:
    """text is the start of a JSON text that stops inside a string, an array or an object."""
    stack, in_string, escaped = [], False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append("]" if ch == "[" else "}")
        elif ch in "]}":
            if not stack or stack.pop() != ch:
                return False
            if not stack:
                return False  # a complete value ended here, so the error lies after it
    return in_string or bool(stack)
