"""Response schemas: refused with a reason (invalid, or beyond llguidance), shown to the model, and
finished outputs validated with a reason (not JSON, wrong at a path, cut off)."""
import json

import pytest

from tensorsharp.chat.schema import (OutputValidationError, SchemaError, check_schema, schema_instruction,
                                     validate_output)
from tensorsharp.errors import TensorSharpError
from tensorsharp.testing.constrained import SCHEMA_CASES

SCHEMA = {"type": "object",
          "properties": {"items": {"type": "array", "items": {"type": "integer", "maximum": 3}, "maxItems": 2},
                         "name": {"type": "string", "maxLength": 5}},
          "required": ["items"]}


def test_errors_are_ours():
    assert issubclass(SchemaError, TensorSharpError) and issubclass(OutputValidationError, TensorSharpError)


@pytest.mark.parametrize("case", range(len(SCHEMA_CASES)))
def test_acceptance_schemas_pass(case):
    check_schema(SCHEMA_CASES[case][1])


@pytest.mark.parametrize("schema, why", [
    ({"type": "foo"}, r"not a valid JSON Schema: .* at type"),
    ({"type": "object", "required": "a"}, r"not a valid JSON Schema: 'a' is not of type 'array' at required"),
    ({"type": "object", "properties": {"a": {"maxLength": -1}}}, r"not a valid JSON Schema: .* at properties/a/maxLength"),
    ([{"type": "string"}], "must be an object, not list"),
    ("object", "must be an object, not str"),
])
def test_invalid_json_schema(schema, why):
    with pytest.raises(SchemaError, match=why):
        check_schema(schema)


@pytest.mark.parametrize("schema, feature", [
    ({"not": {"type": "string"}}, "not"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "string", "pattern": "(?<=a)b"}, "look-around"),
    ({"type": "string", "format": "no-such-format"}, "no-such-format"),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "missing"),
    ({"type": "integer", "minimum": 5, "maximum": 3}, "minimum"),
])
def test_schema_llguidance_cannot_enforce(schema, feature):
    with pytest.raises(SchemaError, match="constrained decoding cannot enforce") as e:
        check_schema(schema)
    assert feature in str(e.value)


def test_instruction_shows_the_schema():
    text = schema_instruction(SCHEMA)
    assert text.startswith("Respond with JSON")
    assert json.loads(text.split("\n", 1)[1]) == SCHEMA
    assert "JSON object" in schema_instruction(None) and "JSON object" in schema_instruction({})


def test_valid_output_is_parsed():
    assert validate_output('{"items": [1, 2], "name": "ab"}', SCHEMA) == {"items": [1, 2], "name": "ab"}
    assert validate_output('{"x": [true]}', None) == {"x": [True]}


@pytest.mark.parametrize("text, why", [
    ('{"items": [1, 5]}', "does not match the schema at items/1: 5 is greater than the maximum of 3"),
    ('{"items": [1, 2, 3]}', "does not match the schema at items: .* too long"),
    ('{"name": "ab"}', "does not match the schema: 'items' is a required property"),
    ('{"items": [], "name": "abcdefg"}', "at name: 'abcdefg' is too long"),
    ("Sure! Here it is", "not JSON: Expecting value at character 0"),
    ('{"items": []} and more', "not JSON: Extra data at character 14"),
    ('{"items": [1}]', "not JSON"),
    ('{"items": [1, 2', "cut off"),
    ('{"items": [], "name": "ab', "cut off"),
    ('{"items": [], "name": "a\\"', "cut off"),
    ('{"items": [1,', "cut off"),
    ('{"items":', "cut off"),
])
def test_invalid_output_says_why(text, why):
    with pytest.raises(OutputValidationError, match=why):
        validate_output(text, SCHEMA)


def test_json_mode_wants_an_object():
    with pytest.raises(OutputValidationError, match="not an object"):
        validate_output("[1, 2]", None)
    with pytest.raises(OutputValidationError, match="cut off"):
        validate_output('{"a": {"b": [', {})
