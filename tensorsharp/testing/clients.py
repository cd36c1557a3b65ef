"""What the client-library matrix (tests/clients) asks every library, and the checks that tell a
server fault (the library could not parse the reply, a forced call is missing, a call names a tool
that was never offered, constrained arguments break their schema) from a model miss (a well-formed
reply that is simply wrong, which a 135M model is allowed to give)."""
from __future__ import annotations

import json

import jsonschema

MODELS = {"qwen": "qwen2.5-coder-0.5b", "smollm2": "smollm2-135m"}

CHAT = "What is the capital of France? Answer in one short sentence."
WEATHER_ASK = "What is the weather in Paris?"
CITY_ASK = "Give the capital of France and its country."

WEATHER_PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TIME_PARAMS = {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.",
                                      "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "get_time", "description": "Current time in a timezone.",
                                      "parameters": TIME_PARAMS}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
NAMED = {"type": "function", "function": {"name": "get_time"}}

CITY_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "country": {"type": "string"}},
               "required": ["name", "country"]}

# Small budgets keep the matrix fast; each is well above what a right answer takes on Qwen.
CHAT_TOKENS = 16
CALL_TOKENS = 48
JSON_TOKENS = 48


def check_call(name: str, arguments, schemas: dict = SCHEMAS) -> dict:
    """A parsed tool call's arguments, asserting what the server guarantees for every call it
    returns (auto mode included, since a call is constrained once it opens): an offered name and
    JSON arguments valid against that tool's schema."""
    assert name in schemas, f"the call names {name!r}, which was not offered ({sorted(schemas)})"
    args = json.loads(arguments) if isinstance(arguments, str) else arguments
    assert isinstance(args, dict), f"arguments of {name} are not a JSON object: {arguments!r}"
    jsonschema.validate(args, schemas[name])
    return args


def says_paris(text) -> bool:
    return isinstance(text, str) and "paris" in text.lower()


def right_city(name, country) -> bool:
    return str(name).strip().lower() == "paris" and "france" in str(country).lower()
