"""pydantic-ai's OpenAIChatModel against a live server: an agent's run and streamed run, one model
request with tool_choice auto / required / one named tool, and output types (the default output
tool, NativeOutput's json_schema, PromptedOutput's json_object)."""
import asyncio

import pytest
from pydantic import BaseModel

pytest.importorskip("pydantic_ai", reason="pydantic-ai-slim is not installed: pip install tensorsharp[test]")
from pydantic_ai import Agent, NativeOutput, PromptedOutput, ToolOutput  # noqa: E402
from pydantic_ai.direct import model_request_sync  # noqa: E402
from pydantic_ai.exceptions import UnexpectedModelBehavior  # noqa: E402
from pydantic_ai.messages import ModelRequest, TextPart, ToolCallPart  # noqa: E402
from pydantic_ai.models import ModelRequestParameters  # noqa: E402
from pydantic_ai.models.openai import OpenAIChatModel  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402
from pydantic_ai.tools import ToolDefinition  # noqa: E402

from tensorsharp.testing.clients import (CALL_TOKENS, CHAT, CHAT_TOKENS, CITY_ASK, JSON_TOKENS, TOOLS,  # noqa: E402
                                         WEATHER_ASK, check_call, right_city, says_paris)

TOOL_DEFS = [ToolDefinition(name=t["function"]["name"], description=t["function"]["description"],
                            parameters_json_schema=t["function"]["parameters"]) for t in TOOLS]
# The output tool is a call forced with tool_choice "required" and NativeOutput sends the schema:
# the server holds both to City. PromptedOutput only asks for a JSON object.
OUTPUTS = {"tool": (ToolOutput, True), "native": (NativeOutput, True), "prompted": (PromptedOutput, False)}


class City(BaseModel):
    """A city and the country it is in."""
    name: str
    country: str


def model(server):
    return OpenAIChatModel(server.model, provider=OpenAIProvider(base_url=server.base + "/v1", api_key="unused"))


def settings(tokens, **kw):
    return {"temperature": 0, "max_tokens": tokens, **kw}


def test_models():
    pytest.skip("pydantic-ai has no model listing")


def test_chat(server, quality):
    out = Agent(model(server), model_settings=settings(CHAT_TOKENS)).run_sync(CHAT).output
    assert isinstance(out, str) and out
    quality(says_paris(out), f"no Paris in {out!r}")


def test_stream(server, quality):
    async def run():
        agent = Agent(model(server), model_settings=settings(CHAT_TOKENS))
        async with agent.run_stream(CHAT) as r:
            # No debouncing: pieces that arrive within its 0.1 s window would come out as one.
            return [t async for t in r.stream_text(delta=True, debounce_by=None)]
    pieces = asyncio.run(run())
    assert len(pieces) > 1
    quality(says_paris("".join(pieces)), f"no Paris in {''.join(pieces)!r}")


@pytest.mark.parametrize("choice", ["auto", "required", "named"])
def test_tools(server, quality, choice):
    r = model_request_sync(model(server), [ModelRequest.user_text_prompt(WEATHER_ASK)],
                           model_settings=settings(CALL_TOKENS, tool_choice={"named": ["get_time"]}.get(choice, choice)),
                           model_request_parameters=ModelRequestParameters(function_tools=TOOL_DEFS,
                                                                           allow_text_output=True))
    calls = [p for p in r.parts if isinstance(p, ToolCallPart)]
    if choice == "auto" and not calls:
        quality(False, f"answered in text: {[p.content for p in r.parts if isinstance(p, TextPart)]}")
        return
    assert len(calls) == 1 and r.finish_reason == "tool_call", r
    args = check_call(calls[0].tool_name, calls[0].args)
    if choice == "named":
        assert calls[0].tool_name == "get_time"
    else:
        quality(calls[0].tool_name == "get_weather" and says_paris(args.get("city")), f"called {calls[0]}")


@pytest.mark.parametrize("kind", sorted(OUTPUTS))
def test_structured(server, quality, kind):
    wrap, constrained = OUTPUTS[kind]
    agent = Agent(model(server), model_settings=settings(JSON_TOKENS), output_type=wrap(City), retries=0)
    try:
        city = agent.run_sync(CITY_ASK).output
    except UnexpectedModelBehavior as e:
        assert not constrained, f"{kind}: a constrained reply was not a City: {e}"
        quality(False, f"{kind}: reply not a City: {e}")
        return
    assert isinstance(city, City)
    quality(right_city(city.name, city.country), f"{kind}: got {city}")
