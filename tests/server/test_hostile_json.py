"""Hostile JSON bodies (issue 18, item 3) get a 400 in the route's dialect, never a 500."""
import json

import pytest

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MESSAGES = [{"role": "user", "content": "Hi"}]
ROUTES = {
    "/v1/chat/completions": {"model": FILE, "messages": MESSAGES, "max_tokens": 2},
    "/v1/completions": {"model": FILE, "prompt": "Hi", "max_tokens": 2},
    "/v1/responses": {"model": FILE, "input": "Hi", "max_output_tokens": 2},
    "/api/chat": {"model": FILE, "messages": MESSAGES, "stream": False, "options": {"num_predict": 2}},
    "/api/generate": {"model": FILE, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}},
    "/api/chat#webui": {"message": "Hi", "maxTokens": 2},
}


def message_of(r) -> str:
    err = r.get_json()["error"]
    return err["message"] if isinstance(err, dict) else err


def post(client, route, body):
    path = route.split("#")[0]
    return client.post(path, data=json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("depth", [100, 5000, 100_000])
def test_deeply_nested_arrays_are_400(client, route, depth):
    body = json.dumps(ROUTES[route])[:-1] + ', "junk": ' + "[" * depth + "]" * depth + "}"
    r = client.post(route.split("#")[0], data=body, content_type="application/json")
    assert r.status_code == 400, r.data[:200]
    assert "deeper than 64 levels" in message_of(r)


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/api/chat"])
def test_a_deep_response_schema_is_400(client, route):
    schema = {"type": "string"}
    for _ in range(300):
        schema = {"type": "object", "properties": {"a": schema}}
    body = dict(ROUTES[route])
    if route.startswith("/v1/"):
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    else:
        body["format"] = schema
    r = post(client, route, body)
    assert r.status_code == 400 and "deeper than" in message_of(r)


def test_a_schema_too_large_is_400_naming_the_limit(client):
    schema = {"type": "object", "properties": {f"p{i}": {"type": "string", "enum": ["a", "b"]} for i in range(5000)}}
    body = {**ROUTES["/v1/chat/completions"],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
    r = post(client, "/v1/chat/completions", body)
    assert r.status_code == 400 and "more than 20000 values" in message_of(r)


@pytest.mark.parametrize("route", ROUTES)
def test_a_lone_surrogate_is_400(client, route):
    body = json.dumps(ROUTES[route])
    body = body.replace('"Hi"', '"Hi \\ud800"') if '"Hi"' in body else body
    body = body[:-1] + ', "model": "x\\udc00y"}' if "webui" not in route else body
    r = client.post(route.split("#")[0], data=body, content_type="application/json")
    assert r.status_code == 400 and "unpaired surrogate" in message_of(r)


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/api/chat"])
@pytest.mark.parametrize("calls", [[1, 2], ["call"], [{"function": 3}], [{"function": {"arguments": "{}"}}],
                                   [{"function": {"name": "f", "arguments": 7}}]])
def test_tool_calls_that_are_not_calls_are_400(client, route, calls):
    body = dict(ROUTES[route])
    body["messages"] = MESSAGES + [{"role": "assistant", "content": "", "tool_calls": calls},
                                   {"role": "user", "content": "and?"}]
    r = post(client, route, body)
    assert r.status_code == 400, r.data[:300]
    assert "tool_calls[0]" in message_of(r)


def test_too_many_completions_in_one_request_is_400(client):
    r = post(client, "/v1/completions", {"model": FILE, "prompt": ["Hi"] * 10_000, "max_tokens": 1})
    assert r.status_code == 400 and "more than 64 completions" in message_of(r)


def test_tools_too_large_are_400_naming_the_limit(client):
    tools = [{"type": "function", "function": {"name": f"f{i}", "parameters": {
        "type": "object", "properties": {f"p{j}": {"type": "string"} for j in range(100)}}}} for i in range(120)]
    r = post(client, "/v1/chat/completions", {**ROUTES["/v1/chat/completions"], "tools": tools})
    assert r.status_code == 400 and "more than 20000 values" in message_of(r)
