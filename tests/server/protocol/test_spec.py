"""Every response shape the server sends, checked against the official documents' required fields,
types and enums: OpenAI's published OpenAPI document (chat completions and chunks, completions and
chunks, models, embeddings, responses, errors) and Ollama's docs/api.md and docs/openapi.yaml
(generate and chat, lines and final, tags, show, ps, version, embed, pull and push progress, blobs,
errors). The fragments below restate those field facts; where the document and the real API differ,
they follow the real API and say so."""
import jsonschema
import pytest

from tensorsharp.testing.server import ndjson_lines, sse_events

MODEL = "smollm2-135m"

INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
NULL_STR = {"type": ["string", "null"]}
RFC3339 = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"}


def obj(required: list, **properties) -> dict:
    return {"type": "object", "required": required, "properties": properties}


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


def nullable(schema: dict) -> dict:
    return {"anyOf": [{"type": "null"}, schema]}


# -- OpenAI (components/schemas of the OpenAPI document) ---------------------------------------
USAGE = obj(["prompt_tokens", "completion_tokens", "total_tokens"], prompt_tokens=INT, completion_tokens=INT,
            total_tokens=INT, prompt_tokens_details=obj([], cached_tokens=INT))
TOP_LOGPROB = obj(["token", "logprob", "bytes"], token=STR, logprob=NUM, bytes=nullable(array(INT)))
TOKEN_LOGPROB = obj(["token", "logprob", "bytes", "top_logprobs"], token=STR, logprob=NUM,
                    bytes=nullable(array(INT)), top_logprobs=array(TOP_LOGPROB))
CHOICE_LOGPROBS = nullable(obj(["content", "refusal"], content=nullable(array(TOKEN_LOGPROB)),
                               refusal=nullable(array(TOKEN_LOGPROB))))
TOOL_CALL = obj(["id", "type", "function"], id=STR, type={"enum": ["function"]},
                function=obj(["name", "arguments"], name=STR, arguments=STR))
FINISH = ["stop", "length", "tool_calls", "content_filter", "function_call"]
CHAT_COMPLETION = obj(
    ["id", "choices", "created", "model", "object"], id=STR, created=INT, model=STR,
    object={"enum": ["chat.completion"]}, system_fingerprint=STR, usage=USAGE,
    choices=array(obj(["finish_reason", "index", "message", "logprobs"], index=INT, finish_reason={"enum": FINISH},
                      logprobs=CHOICE_LOGPROBS,
                      message=obj(["content", "refusal", "role"], content=NULL_STR, refusal=NULL_STR,
                                  role={"enum": ["assistant"]}, tool_calls=array(TOOL_CALL)))))
CHUNK_TOOL_CALL = obj(["index"], index=INT, id=STR, type={"enum": ["function"]},
                      function=obj([], name=STR, arguments=STR))
CHAT_CHUNK = obj(
    ["id", "choices", "created", "model", "object"], id=STR, created=INT, model=STR,
    object={"enum": ["chat.completion.chunk"]}, system_fingerprint=STR, usage=nullable(USAGE),
    choices=array(obj(["delta", "finish_reason", "index"], index=INT, finish_reason={"enum": FINISH + [None]},
                      logprobs=CHOICE_LOGPROBS,
                      delta=obj([], content=NULL_STR, refusal=NULL_STR, tool_calls=array(CHUNK_TOOL_CALL),
                                role={"enum": ["developer", "system", "user", "assistant", "tool"]}))))
TEXT_LOGPROBS = nullable(obj([], text_offset=array(INT), token_logprobs=array(NUM), tokens=array(STR),
                             top_logprobs=array({"type": "object", "additionalProperties": NUM})))


def completion(finish: list) -> dict:
    return obj(["id", "object", "created", "model", "choices"], id=STR, created=INT, model=STR,
               object={"enum": ["text_completion"]}, system_fingerprint=STR, usage=USAGE,
               choices=array(obj(["finish_reason", "index", "logprobs", "text"], index=INT, text=STR,
                                 finish_reason={"enum": finish}, logprobs=TEXT_LOGPROBS)))


COMPLETION = completion(["stop", "length", "content_filter"])
# The document's finish_reason has no null, but the real API streams null until the last chunk.
COMPLETION_CHUNK = completion(["stop", "length", "content_filter", None])
MODEL_ENTRY = obj(["id", "object", "created", "owned_by"], id=STR, object={"enum": ["model"]}, created=INT,
                  owned_by=STR)
MODEL_LIST = obj(["object", "data"], object={"enum": ["list"]}, data=array(MODEL_ENTRY))
EMBEDDINGS = obj(["data", "model", "object", "usage"], model=STR, object={"enum": ["list"]},
                 usage=obj(["prompt_tokens", "total_tokens"], prompt_tokens=INT, total_tokens=INT),
                 data=array(obj(["index", "embedding", "object"], index=INT, object={"enum": ["embedding"]},
                                embedding={"anyOf": [array(NUM), STR]})))
OPENAI_ERROR = obj(["error"], error=obj(["type", "message", "param", "code"], type=STR, message=STR,
                                        param=NULL_STR, code=NULL_STR))

# The Responses API's Response object (its required fields); output items are the client's to parse
# (tests/server/test_responses.py runs the official client over them).
RESPONSE = obj(["id", "object", "created_at", "status", "error", "incomplete_details", "instructions", "model",
                "output", "parallel_tool_calls", "metadata", "tool_choice", "tools", "temperature", "top_p"],
               id=STR, object={"enum": ["response"]}, created_at=NUM,
               status={"enum": ["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]},
               error=nullable(obj(["code", "message"], code=STR, message=STR)),
               incomplete_details=nullable(obj([], reason={"enum": ["max_output_tokens", "content_filter"]})),
               instructions=nullable({"type": ["string", "array"]}), model=STR,
               output=array(obj(["type"], type=STR)), parallel_tool_calls=BOOL, metadata=nullable({"type": "object"}),
               tools=array({"type": "object"}), temperature=nullable(NUM), top_p=nullable(NUM),
               usage=obj(["input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details",
                          "total_tokens"], input_tokens=INT, output_tokens=INT, total_tokens=INT,
                         input_tokens_details=obj(["cached_tokens"], cached_tokens=INT),
                         output_tokens_details=obj(["reasoning_tokens"], reasoning_tokens=INT)))

# -- Ollama (docs/api.md, docs/openapi.yaml) ----------------------------------------------------
OLLAMA_TOP = obj(["token", "logprob"], token=STR, logprob=NUM, bytes=array(INT))
OLLAMA_LOGPROB = obj(["token", "logprob"], token=STR, logprob=NUM, bytes=array(INT), top_logprobs=array(OLLAMA_TOP))
TIMINGS = {k: INT for k in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                            "eval_count", "eval_duration")}
GENERATE_LINE = obj(["model", "created_at", "response", "done"], model=STR, created_at=RFC3339, response=STR,
                    thinking=STR, done={"const": False}, logprobs=array(OLLAMA_LOGPROB))
GENERATE_FINAL = obj(["model", "created_at", "response", "done", "done_reason", *TIMINGS], model=STR,
                     created_at=RFC3339, response=STR, thinking=STR, done={"const": True}, done_reason=STR,
                     context=array(INT), logprobs=array(OLLAMA_LOGPROB), **TIMINGS)
OLLAMA_CALL = obj(["function"], function=obj(["name"], name=STR, arguments={"type": "object"}))
CHAT_MESSAGE = obj(["role", "content"], role={"enum": ["assistant"]}, content=STR, thinking=STR,
                   tool_calls=array(OLLAMA_CALL), images=array(STR))
CHAT_LINE = obj(["model", "created_at", "message", "done"], model=STR, created_at=RFC3339, message=CHAT_MESSAGE,
                done={"const": False}, logprobs=array(OLLAMA_LOGPROB))
CHAT_FINAL = obj(["model", "created_at", "message", "done", "done_reason", *TIMINGS], model=STR,
                 created_at=RFC3339, message=CHAT_MESSAGE, done={"const": True}, done_reason=STR,
                 logprobs=array(OLLAMA_LOGPROB), **TIMINGS)
LOAD = obj(["model", "created_at", "done", "done_reason"], model=STR, created_at=RFC3339, done={"const": True},
           done_reason={"enum": ["load"]})
DETAILS = obj(["format", "family", "families", "parameter_size", "quantization_level"], parent_model=STR,
              format=STR, family=STR, families=array(STR), parameter_size=STR, quantization_level=STR)
SUMMARY = obj(["name", "model", "size", "digest", "details"], name=STR, model=STR, size=INT, digest=STR,
              details=DETAILS)
TAGS = obj(["models"], models=array({**SUMMARY, "required": SUMMARY["required"] + ["modified_at"],
                                     "properties": {**SUMMARY["properties"], "modified_at": RFC3339}}))
PS = obj(["models"], models=array({**SUMMARY, "required": SUMMARY["required"] + ["expires_at", "size_vram"],
                                   "properties": {**SUMMARY["properties"], "expires_at": RFC3339, "size_vram": INT,
                                                  "context_length": INT}}))
SHOW = obj(["parameters", "license", "modified_at", "details", "template", "capabilities", "model_info"],
           parameters=STR, license=STR, modified_at=RFC3339, details=DETAILS, template=STR, modelfile=STR,
           capabilities=array(STR), model_info={"type": "object"})
VERSION = obj(["version"], version=STR)
EMBED = obj(["model", "embeddings"], model=STR, embeddings=array(array(NUM)), total_duration=INT, load_duration=INT,
            prompt_eval_count=INT)
LEGACY_EMBEDDING = obj(["embedding"], embedding=array(NUM))
OLLAMA_ERROR = {**obj(["error"], error=STR), "additionalProperties": False}
# pull, push and create stream ProgressResponse lines (a status, and a layer's digest and byte counts)
PROGRESS = {**obj(["status"], status=STR, digest=STR, total=INT, completed=INT), "additionalProperties": False}


def check(instance, schema: dict) -> None:
    jsonschema.Draft202012Validator(schema).validate(instance)


def ok(r, schema: dict) -> dict:
    assert r.status_code == 200, r.data
    body = r.get_json()
    check(body, schema)
    return body


def chat_body(**kw):
    return {"model": MODEL, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 6, **kw}


@pytest.mark.parametrize("extra", [{}, {"logprobs": True, "top_logprobs": 2}, {"n": 2, "temperature": 1, "seed": 1}])
def test_openai_chat(client, extra):
    body = ok(client.post("/v1/chat/completions", json=chat_body(**extra)), CHAT_COMPLETION)
    assert body["choices"][0]["message"]["refusal"] is None
    if extra.get("logprobs"):
        assert body["choices"][0]["logprobs"]["content"] and body["choices"][0]["logprobs"]["refusal"] is None


def test_openai_chat_stream(client):
    r = client.post("/v1/chat/completions", json=chat_body(stream=True, logprobs=True, top_logprobs=1,
                                                           stream_options={"include_usage": True}))
    events = sse_events(r.data)
    assert events[-1] == "[DONE]" and len(events) > 3
    for e in events[:-1]:
        check(e, CHAT_CHUNK)
    assert events[-2]["usage"]["total_tokens"] > 0
    assert len({e["system_fingerprint"] for e in events[:-1]}) == 1


def test_openai_tool_call_shapes(client):
    tool = {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
    body = chat_body(tools=[tool], tool_choice="required", max_tokens=40)
    whole = ok(client.post("/v1/chat/completions", json=body), CHAT_COMPLETION)
    assert whole["choices"][0]["message"]["tool_calls"]
    events = sse_events(client.post("/v1/chat/completions", json={**body, "stream": True}).data)
    for e in events[:-1]:
        check(e, CHAT_CHUNK)
    assert any(e["choices"] and e["choices"][0]["delta"].get("tool_calls") for e in events[:-1])


@pytest.mark.parametrize("extra", [{}, {"logprobs": 2, "echo": True}])
def test_openai_completion(client, extra):
    body = {"model": MODEL, "prompt": "The sky is", "max_tokens": 5, **extra}
    ok(client.post("/v1/completions", json=body), COMPLETION)
    events = sse_events(client.post("/v1/completions", json={**body, "stream": True,
                                                              "stream_options": {"include_usage": True}}).data)
    assert events[-1] == "[DONE]"
    for e in events[:-2]:
        check(e, COMPLETION_CHUNK)
    check(events[-2], {**COMPLETION_CHUNK, "required": COMPLETION_CHUNK["required"] + ["usage"]})


def test_openai_models(client):
    listed = ok(client.get("/v1/models"), MODEL_LIST)
    ok(client.get(f"/v1/models/{listed['data'][0]['id']}"), MODEL_ENTRY)


def test_embeddings(client):
    for encoding in ("float", "base64"):
        ok(client.post("/v1/embeddings", json={"model": MODEL, "input": ["a", "b"], "encoding_format": encoding}),
           EMBEDDINGS)
    ok(client.post("/api/embed", json={"model": MODEL, "input": ["a", "b"]}), EMBED)
    ok(client.post("/api/embeddings", json={"model": MODEL, "prompt": "a"}), LEGACY_EMBEDDING)


@pytest.mark.parametrize("method, path, body, status", [
    ("post", "/v1/chat/completions", {"model": MODEL}, 400),
    ("post", "/v1/chat/completions", {**chat_body(), "model": "gpt-4o"}, 404),
    ("get", "/v1/models/nope", None, 404),
    ("post", "/v1/no/such/route", {"model": MODEL}, 404),   # was the page catch-all's 405
    ("get", "/v1/nothing", None, 404),
    ("get", "/v1/chat/completions", None, 405),
])
def test_openai_errors(client, method, path, body, status):
    r = getattr(client, method)(path, json=body)
    assert r.status_code == status, r.data
    check(r.get_json(), OPENAI_ERROR)


def test_ollama_generate(client):
    body = {"model": MODEL, "prompt": "Why is the sky blue?", "options": {"num_predict": 6}}
    final = ok(client.post("/api/generate", json={**body, "stream": False}), GENERATE_FINAL)
    assert "context" in final
    lines = ndjson_lines(client.post("/api/generate", json={**body, "logprobs": True, "top_logprobs": 2}).data)
    for line in lines[:-1]:
        check(line, GENERATE_LINE)
    check(lines[-1], GENERATE_FINAL)
    assert "context" in lines[-1]


def test_ollama_chat(client):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi!"}], "options": {"num_predict": 6}}
    ok(client.post("/api/chat", json={**body, "stream": False}), CHAT_FINAL)
    lines = ndjson_lines(client.post("/api/chat", json={**body, "logprobs": True}).data)
    for line in lines[:-1]:
        check(line, CHAT_LINE)
    check(lines[-1], CHAT_FINAL)


def test_ollama_load_responses(client):
    ok(client.post("/api/generate", json={"model": MODEL}), LOAD)
    loaded = ok(client.post("/api/chat", json={"model": MODEL, "messages": []}), LOAD)
    assert loaded["message"] == {"role": "assistant", "content": ""}


def test_ollama_model_routes(client):
    ok(client.get("/api/tags"), TAGS)
    ok(client.get("/api/ps"), PS)
    ok(client.post("/api/show", json={"model": MODEL}), SHOW)
    ok(client.get("/api/version"), VERSION)


def test_responses(client):
    body = ok(client.post("/v1/responses", json={"model": MODEL, "input": "Hi", "max_output_tokens": 4}), RESPONSE)
    check(client.get(f"/v1/responses/{body['id']}").get_json(), RESPONSE)


def test_ollama_transfer_routes(client):
    lines = ndjson_lines(client.post("/api/pull", json={"model": MODEL}).data)   # present: nothing is fetched
    for line in lines:
        check(line, PROGRESS)
    assert lines[-1] == {"status": "success"}
    ok(client.post("/api/pull", json={"model": MODEL, "stream": False}), PROGRESS)
    # No registry to push to: Ollama's failed push, a status line, then an error line
    *statuses, error = ndjson_lines(client.post("/api/push", json={"model": MODEL}).data)
    for line in statuses:
        check(line, PROGRESS)
    check(error, OLLAMA_ERROR)
    r = client.post("/api/push", json={"model": MODEL, "stream": False})
    assert r.status_code == 500
    check(r.get_json(), OLLAMA_ERROR)
    r = client.head("/api/blobs/sha256:" + "0" * 64)
    assert r.status_code == 404 and r.data == b""


@pytest.mark.parametrize("method, path, body, status", [
    ("post", "/api/generate", {"model": "llama3", "prompt": "x"}, 404),
    ("post", "/api/generate", {"model": MODEL, "prompt": 7}, 400),
    ("post", "/api/no/such/route", {"model": MODEL}, 404),   # was the page catch-all's 405
    ("get", "/api/nothing", None, 404),
    ("get", "/api/generate", None, 405),
])
def test_ollama_errors(client, method, path, body, status):
    r = getattr(client, method)(path, json=body)
    assert r.status_code == status, r.data
    check(r.get_json(), OLLAMA_ERROR)


def test_page_catch_all_serves_only_page_files(client):
    assert client.get("/index.html").status_code == 200
    check(client.post("/index.html", json={}).get_json(), OLLAMA_ERROR)
    assert client.post("/index.html", json={}).status_code == 405
    r = client.post("/no-such-page", json={})
    assert r.status_code == 404
    check(r.get_json(), OLLAMA_ERROR)
