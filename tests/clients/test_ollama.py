"""The official ollama client against a live server: chat, streamed chat, tools, structured output
through `format=` (a pydantic model's schema, and "json"), and the model list and show."""
import json

import jsonschema
import ollama
import pytest
from pydantic import BaseModel

from tensorsharp.testing.clients import (CALL_TOKENS, CHAT, CHAT_TOKENS, CITY_ASK, CITY_SCHEMA, JSON_TOKENS,
                                         WEATHER_ASK, check_call, right_city, says_paris)

NO_TOOL_CHOICE = "Ollama's /api/chat has no tool_choice: the ollama library cannot force a call"


class City(BaseModel):
    name: str
    country: str


def get_weather(city: str) -> str:
    """Current weather in a city.

    Args:
        city: the city
    """


def get_time(timezone: str) -> str:
    """Current time in a timezone.

    Args:
        timezone: the timezone
    """


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.base)


def chat(client, server, content, tokens, **kw):
    return client.chat(model=server.name, messages=[{"role": "user", "content": content}],
                       options={"temperature": 0, "num_predict": tokens}, **kw)


def test_models(client, server):
    assert server.model in [m.model for m in client.list().models]
    show = client.show(server.name)
    assert show.details.format == "gguf" and "completion" in show.capabilities


def test_chat(client, server, quality):
    r = chat(client, server, CHAT, CHAT_TOKENS)
    assert r.message.content and r.done and r.done_reason in ("stop", "length") and r.eval_count > 0
    quality(says_paris(r.message.content), f"no Paris in {r.message.content!r}")


def test_stream(client, server, quality):
    parts = list(chat(client, server, CHAT, CHAT_TOKENS, stream=True))
    assert len(parts) > 2 and parts[-1].done and not any(p.done for p in parts[:-1])
    text = "".join(p.message.content for p in parts)
    quality(says_paris(text), f"no Paris in {text!r}")


@pytest.mark.parametrize("choice", ["auto", "required", "named"])
def test_tools(client, server, quality, choice):
    if choice != "auto":
        pytest.skip(NO_TOOL_CHOICE)
    r = chat(client, server, WEATHER_ASK, CALL_TOKENS, tools=[get_weather, get_time])
    if not r.message.tool_calls:
        quality(False, f"answered in text: {r.message.content!r}")
        return
    call = r.message.tool_calls[0].function
    args = check_call(call.name, call.arguments)
    quality(call.name == "get_weather" and says_paris(args.get("city")), f"called {call}")


def test_structured_format_schema(client, server, quality):
    r = chat(client, server, CITY_ASK, JSON_TOKENS, format=City.model_json_schema())
    if r.done_reason == "length":
        quality(False, f"ran out of tokens inside its JSON: {r.message.content!r}")
        return
    city = City.model_validate_json(r.message.content)
    quality(right_city(city.name, city.country), f"got {city}")


def test_structured_format_json(client, server, quality):
    r = chat(client, server, CITY_ASK + " Reply in JSON with keys name and country.", JSON_TOKENS, format="json")
    if r.done_reason == "length":
        quality(False, f"ran out of tokens inside its JSON: {r.message.content!r}")
        return
    value = json.loads(r.message.content)
    assert isinstance(value, dict)
    try:
        jsonschema.validate(value, CITY_SCHEMA)
    except jsonschema.ValidationError as e:
        quality(False, f"JSON without the asked keys: {e.message}")
        return
    quality(right_city(value["name"], value["country"]), f"got {value}")


def test_structured_cut_off_is_length(client, server):
    r = chat(client, server, CITY_ASK, 3, format=City.model_json_schema())
    assert r.done_reason == "length" and r.message.content.startswith("{")
