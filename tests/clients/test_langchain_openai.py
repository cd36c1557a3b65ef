"""langchain-openai's ChatOpenAI against a live server: invoke, stream, bind_tools with tool_choice
auto / "any" (required) / a tool's name, and with_structured_output in each of its methods."""
import pytest
from pydantic import BaseModel

pytest.importorskip("langchain_openai", reason="langchain-openai is not installed: pip install tensorsharp[test]")
from langchain_core.tools import tool  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402

from tensorsharp.testing.clients import (CALL_TOKENS, CHAT, CHAT_TOKENS, CITY_ASK, JSON_TOKENS, WEATHER_ASK,  # noqa: E402
                                         check_call, right_city, says_paris)

# The schema check needs only a pass or a miss per method: json_schema is constrained by the
# server, function_calling is a forced call, json_mode only asks for some JSON object.
CONSTRAINED = {"json_schema": True, "function_calling": True, "json_mode": False}


class City(BaseModel):
    """A city and the country it is in."""
    name: str
    country: str


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""


@tool
def get_time(timezone: str) -> str:
    """Current time in a timezone."""


def llm(server, tokens):
    return ChatOpenAI(base_url=server.base + "/v1", api_key="unused", model=server.model, temperature=0,
                      max_tokens=tokens)


def test_models():
    pytest.skip("langchain-openai has no model listing")


def test_chat(server, quality):
    m = llm(server, CHAT_TOKENS).invoke(CHAT)
    assert isinstance(m.content, str) and m.content and m.response_metadata["finish_reason"] in ("stop", "length")
    quality(says_paris(m.content), f"no Paris in {m.content!r}")


def test_stream(server, quality):
    chunks = list(llm(server, CHAT_TOKENS).stream(CHAT))
    text = "".join(c.content for c in chunks)
    assert sum(1 for c in chunks if c.content) > 1
    quality(says_paris(text), f"no Paris in {text!r}")


@pytest.mark.parametrize("choice", ["auto", "required", "named"])
def test_tools(server, quality, choice):
    bound = llm(server, CALL_TOKENS).bind_tools([get_weather, get_time],
                                                tool_choice={"required": "any", "named": "get_time"}.get(choice, choice))
    m = bound.invoke(WEATHER_ASK)
    assert not m.invalid_tool_calls, m.invalid_tool_calls
    if choice == "auto" and not m.tool_calls:
        quality(False, f"answered in text: {m.content!r}")
        return
    assert len(m.tool_calls) == 1 if choice != "auto" else m.tool_calls
    call = m.tool_calls[0]
    args = check_call(call["name"], call["args"])
    if choice == "named":
        assert call["name"] == "get_time"
    else:
        quality(call["name"] == "get_weather" and says_paris(args.get("city")), f"called {call}")


@pytest.mark.parametrize("method", sorted(CONSTRAINED))
def test_structured(server, quality, method):
    structured = llm(server, JSON_TOKENS).with_structured_output(City, method=method, include_raw=True)
    out = structured.invoke(CITY_ASK + " Reply in JSON with keys name and country.")
    if out["parsing_error"] is not None or out["parsed"] is None:
        finish = out["raw"].response_metadata.get("finish_reason")
        assert not CONSTRAINED[method] or finish == "length", f"{method}: {out['parsing_error']!r} {out['raw']!r}"
        quality(False, f"{method}: unparsed reply ({finish}): {out['raw'].content!r}")
        return
    city = out["parsed"]
    quality(right_city(city.name, city.country), f"got {city}")
