"""langchain-ollama's ChatOllama against a live server: the model check on init, invoke, stream,
bind_tools, and with_structured_output through Ollama's `format`."""
import pytest
from pydantic import BaseModel

pytest.importorskip("langchain_ollama", reason="langchain-ollama is not installed: pip install tensorsharp[test]")
from langchain_core.tools import tool  # noqa: E402
from langchain_ollama import ChatOllama  # noqa: E402

from tensorsharp.testing.clients import (CALL_TOKENS, CHAT, CHAT_TOKENS, CITY_ASK, JSON_TOKENS, WEATHER_ASK,  # noqa: E402
                                         check_call, right_city, says_paris)

NO_TOOL_CHOICE = "langchain-ollama ignores tool_choice: Ollama's /api/chat has none"


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
    # validate_model_on_init looks the name up in /api/tags, as a user's first call would.
    return ChatOllama(base_url=server.base, model=server.name, temperature=0, num_predict=tokens,
                      validate_model_on_init=True)


def test_models(server):
    llm(server, 1)
    with pytest.raises(ValueError, match="not found"):
        ChatOllama(base_url=server.base, model="no-such-model", validate_model_on_init=True)


def test_chat(server, quality):
    m = llm(server, CHAT_TOKENS).invoke(CHAT)
    assert isinstance(m.content, str) and m.content and m.response_metadata["done_reason"] in ("stop", "length")
    quality(says_paris(m.content), f"no Paris in {m.content!r}")


def test_stream(server, quality):
    chunks = list(llm(server, CHAT_TOKENS).stream(CHAT))
    text = "".join(c.content for c in chunks)
    assert sum(1 for c in chunks if c.content) > 1
    quality(says_paris(text), f"no Paris in {text!r}")


@pytest.mark.parametrize("choice", ["auto", "required", "named"])
def test_tools(server, quality, choice):
    if choice != "auto":
        pytest.skip(NO_TOOL_CHOICE)
    m = llm(server, CALL_TOKENS).bind_tools([get_weather, get_time]).invoke(WEATHER_ASK)
    assert not m.invalid_tool_calls, m.invalid_tool_calls
    if not m.tool_calls:
        quality(False, f"answered in text: {m.content!r}")
        return
    call = m.tool_calls[0]
    args = check_call(call["name"], call["args"])
    quality(call["name"] == "get_weather" and says_paris(args.get("city")), f"called {call}")


@pytest.mark.parametrize("method", ["json_schema", "json_mode"])
def test_structured(server, quality, method):
    structured = llm(server, JSON_TOKENS).with_structured_output(City, method=method, include_raw=True)
    out = structured.invoke(CITY_ASK + " Reply in JSON with keys name and country.")
    if out["parsing_error"] is not None or out["parsed"] is None:
        finish = out["raw"].response_metadata.get("done_reason")
        assert method != "json_schema" or finish == "length", f"{method}: {out['parsing_error']!r} {out['raw']!r}"
        quality(False, f"{method}: unparsed reply ({finish}): {out['raw'].content!r}")
        return
    city = out["parsed"]
    quality(right_city(city.name, city.country), f"got {city}")
