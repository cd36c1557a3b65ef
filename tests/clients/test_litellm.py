"""litellm against a live server through its two providers for it, "openai/" (the OpenAI-compatible
API) and "ollama_chat/" (Ollama's /api/chat): completion, streamed completion, tool_choice auto /
required / named, response_format with a pydantic model, and the model list."""
import os

import pytest
from pydantic import BaseModel

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")   # no fetch of its price list at import
litellm = pytest.importorskip("litellm", reason="install the test extra (or tensorsharp[clients])")

from tensorsharp.testing.clients import (CALL_TOKENS, CHAT, CHAT_TOKENS, CITY_ASK, JSON_TOKENS, NAMED, TOOLS,  # noqa: E402
                                         WEATHER_ASK, check_call, right_city, says_paris)

PROVIDERS = ["openai", "ollama_chat"]
NO_TOOL_CHOICE = "Ollama's /api/chat has no tool_choice: litellm's ollama_chat provider drops it"


class City(BaseModel):
    name: str
    country: str


def complete(server, provider, content, tokens, **kw):
    base = server.base + "/v1" if provider == "openai" else server.base
    return litellm.completion(model=f"{provider}/{server.model}", api_base=base, api_key="unused",
                              messages=[{"role": "user", "content": content}], max_tokens=tokens, temperature=0, **kw)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_models(server, provider):
    base = server.base + "/v1" if provider == "openai" else server.base
    names = litellm.get_valid_models(check_provider_endpoint=True, custom_llm_provider=provider.split("_")[0],
                                     api_base=base, api_key="unused")
    assert any(n.endswith(server.model) for n in names), names


@pytest.mark.parametrize("provider", PROVIDERS)
def test_chat(server, quality, provider):
    r = complete(server, provider, CHAT, CHAT_TOKENS)
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")
    quality(says_paris(r.choices[0].message.content), f"no Paris in {r.choices[0].message.content!r}")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream(server, quality, provider):
    pieces = [c.choices[0].delta.content for c in complete(server, provider, CHAT, CHAT_TOKENS, stream=True)
              if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1
    quality(says_paris("".join(pieces)), f"no Paris in {''.join(pieces)!r}")


@pytest.mark.parametrize("choice", ["auto", "required", "named"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_tools(server, quality, provider, choice):
    if provider == "ollama_chat" and choice != "auto":
        pytest.skip(NO_TOOL_CHOICE)
    r = complete(server, provider, WEATHER_ASK, CALL_TOKENS, tools=TOOLS,
                 tool_choice=NAMED if choice == "named" else choice)
    msg = r.choices[0].message
    if choice == "auto" and not msg.tool_calls:
        quality(False, f"answered in text: {msg.content!r}")
        return
    assert msg.tool_calls and r.choices[0].finish_reason == "tool_calls"
    assert len(msg.tool_calls) == 1 or choice == "auto"
    call = msg.tool_calls[0].function
    args = check_call(call.name, call.arguments)
    if choice == "named":
        assert call.name == "get_time"
    else:
        quality(call.name == "get_weather" and says_paris(args.get("city")), f"called {call}")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_structured(server, quality, provider):
    r = complete(server, provider, CITY_ASK, JSON_TOKENS, response_format=City)
    if r.choices[0].finish_reason == "length":
        quality(False, f"ran out of tokens inside its JSON: {r.choices[0].message.content!r}")
        return
    city = City.model_validate_json(r.choices[0].message.content)
    quality(right_city(city.name, city.country), f"got {city}")
