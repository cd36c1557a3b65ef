"""instructor over the openai client against a live server: a response model in each mode (TOOLS
forces a named call, JSON_SCHEMA sends the schema, JSON and MD_JSON only ask for JSON), streamed
partial objects, and PARALLEL_TOOLS, which leaves the call to the model (tool_choice auto)."""
from typing import Iterable

import openai
import pytest
from pydantic import BaseModel

instructor = pytest.importorskip("instructor", reason="instructor is not installed: pip install tensorsharp[test]")

from instructor.core import IncompleteOutputException, InstructorRetryException  # noqa: E402

from tensorsharp.testing.clients import CITY_ASK, JSON_TOKENS, right_city  # noqa: E402

ONLY_STRUCTURED = "instructor only wraps structured output; plain chat and listing are the openai client's"
# Modes in which the server holds the reply to the response model's schema; in the others a reply
# that fails validation is the model's miss.
CONSTRAINED = {"TOOLS": True, "JSON_SCHEMA": True, "JSON": False, "MD_JSON": False}


class City(BaseModel):
    """A city and the country it is in."""
    name: str
    country: str


def client(server, mode):
    return instructor.from_openai(openai.OpenAI(base_url=server.base + "/v1", api_key="unused"),
                                  mode=getattr(instructor.Mode, mode))


def create(server, mode, response_model=City, **kw):
    return client(server, mode).chat.completions.create_with_completion(
        model=server.model, response_model=response_model, max_retries=0, max_tokens=JSON_TOKENS, temperature=0,
        messages=[{"role": "user", "content": CITY_ASK}], **kw)


@pytest.mark.parametrize("feature", ["chat", "models"])
def test_not_offered(feature):
    pytest.skip(ONLY_STRUCTURED)


@pytest.mark.parametrize("mode", sorted(CONSTRAINED))
def test_structured(server, quality, mode):
    try:
        city, completion = create(server, mode)
    except (InstructorRetryException, IncompleteOutputException) as e:
        assert not CONSTRAINED[mode], f"{mode}: a constrained reply failed validation: {e}"
        last = getattr(e, "last_completion", None)
        quality(False, f"{mode}: reply not a City: {last.choices[0].message.content if last else e}")
        return
    assert isinstance(city, City)
    if mode == "TOOLS":
        (call,) = completion.choices[0].message.tool_calls   # forced by name: exactly one call
        assert call.function.name == "City"
    quality(right_city(city.name, city.country), f"{mode}: got {city}")


def test_stream_partial(server, quality):
    parts = list(client(server, "TOOLS").chat.completions.create_partial(
        model=server.model, response_model=City, max_retries=0, max_tokens=JSON_TOKENS, temperature=0,
        messages=[{"role": "user", "content": CITY_ASK}]))
    assert len(parts) > 2 and isinstance(parts[-1], City)
    City.model_validate(parts[-1].model_dump())   # the last partial is whole
    quality(right_city(parts[-1].name, parts[-1].country), f"got {parts[-1]}")


def test_tools_auto(server, quality):
    try:
        # create_with_completion fails on an Iterable response model (the library's own bug).
        cities = list(client(server, "PARALLEL_TOOLS").chat.completions.create(
            model=server.model, response_model=Iterable[City], max_retries=0, max_tokens=JSON_TOKENS,
            temperature=0, messages=[{"role": "user", "content": CITY_ASK}]))
    except InstructorRetryException as e:
        assert "No tool calls" in str(e), e   # auto: answering in text is the model's choice
        quality(False, "answered in text")
        return
    assert cities and all(isinstance(c, City) for c in cities)
    quality(right_city(cities[0].name, cities[0].country), f"got {cities}")


def test_tools_required():
    pytest.skip("instructor forces its response tool by name (mode TOOLS, in test_structured); it never "
                "sends tool_choice \"required\"")
