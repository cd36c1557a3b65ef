"""The official openai client against a live server: chat, streamed chat, tool_choice auto /
required / named, structured output through `parse(response_format=Model)` and json_object, and
the model list."""
import json

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tensorsharp.testing.clients import (CALL_TOKENS, CHAT, CHAT_TOKENS, CITY_ASK, CITY_SCHEMA, JSON_TOKENS, NAMED,
                                         TOOLS, WEATHER_ASK, check_call, right_city, says_paris)


class City(BaseModel):
    name: str
    country: str


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused")


def ask(client, server, content, **kw):
    return client.chat.completions.create(model=server.model, messages=[{"role": "user", "content": content}],
                                          temperature=0, **kw)


def test_models(client, server):
    assert server.model in [m.id for m in client.models.list()]


def test_chat(client, server, quality):
    r = ask(client, server, CHAT, max_tokens=CHAT_TOKENS)
    choice = r.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length") and r.usage.completion_tokens > 0
    quality(says_paris(choice.message.content), f"no Paris in {choice.message.content!r}")


def test_stream(client, server, quality):
    pieces, finish = [], []
    for chunk in ask(client, server, CHAT, max_tokens=CHAT_TOKENS, stream=True):
        if chunk.choices:
            pieces += [chunk.choices[0].delta.content] if chunk.choices[0].delta.content else []
            finish += [chunk.choices[0].finish_reason] if chunk.choices[0].finish_reason else []
    assert len(pieces) > 1 and finish in (["stop"], ["length"])
    quality(says_paris("".join(pieces)), f"no Paris in {''.join(pieces)!r}")


@pytest.mark.parametrize("choice", ["auto", "required", "named"])
def test_tools(client, server, quality, choice):
    r = ask(client, server, WEATHER_ASK, tools=TOOLS, max_tokens=CALL_TOKENS,
            tool_choice=NAMED if choice == "named" else choice)
    msg, finish = r.choices[0].message, r.choices[0].finish_reason
    if choice == "auto" and not msg.tool_calls:
        quality(False, f"answered in text: {msg.content!r}")
        return
    assert finish == "tool_calls" and msg.tool_calls
    if choice != "auto":
        assert len(msg.tool_calls) == 1, "a forced call is one call unless parallel_tool_calls is asked for"
    call = msg.tool_calls[0]
    assert call.id and call.type == "function"
    args = check_call(call.function.name, call.function.arguments)
    if choice == "named":
        assert call.function.name == "get_time"
    else:
        quality(call.function.name == "get_weather" and says_paris(args.get("city")), f"called {call.function}")


def test_tools_streamed(client, server):
    calls = {}
    for chunk in ask(client, server, WEATHER_ASK, tools=TOOLS, max_tokens=CALL_TOKENS, tool_choice="required",
                     stream=True):
        for d in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(d.index, {"name": "", "arguments": ""})
            call["name"] += d.function.name or ""
            call["arguments"] += d.function.arguments or ""
    assert len(calls) == 1
    check_call(calls[0]["name"], calls[0]["arguments"])


def test_structured_parse(client, server, quality):
    r = client.chat.completions.parse(model=server.model, messages=[{"role": "user", "content": CITY_ASK}],
                                      response_format=City, max_tokens=JSON_TOKENS, temperature=0)
    city = r.choices[0].message.parsed
    assert isinstance(city, City)
    quality(right_city(city.name, city.country), f"got {city}")


def test_structured_json_object(client, server, quality):
    r = ask(client, server, CITY_ASK + " Reply in JSON with keys name and country.",
            response_format={"type": "json_object"}, max_tokens=JSON_TOKENS)
    choice = r.choices[0]
    if choice.finish_reason == "length":
        quality(False, f"ran out of tokens inside its JSON: {choice.message.content!r}")
        return
    value = json.loads(choice.message.content)
    assert isinstance(value, dict)
    try:
        jsonschema.validate(value, CITY_SCHEMA)   # json_object constrains to an object, not these keys
    except jsonschema.ValidationError as e:
        quality(False, f"JSON without the asked keys: {e.message}")
        return
    quality(right_city(value["name"], value["country"]), f"got {value}")


def test_structured_cut_off_is_length(client, server):
    # A JSON reply cut off by max_tokens is the model running out of room, as in OpenAI's API and
    # llama-server: a 200 with finish_reason "length", which parse() turns into its own error.
    with pytest.raises(openai.LengthFinishReasonError):
        client.chat.completions.parse(model=server.model, messages=[{"role": "user", "content": CITY_ASK}],
                                      response_format=City, max_tokens=3, temperature=0)
