"""The OpenAPI 3.0 document of this server's own routes (served at /openapi.json): what each route
takes, as the protocol modules read it, so generators such as schemathesis can exercise them."""
from __future__ import annotations

from importlib import metadata

from tensorsharp.server.protocol.ollama import ROLES as OLLAMA_ROLES
from tensorsharp.server.protocol.ollama import THINK_LEVELS as OLLAMA_THINK_LEVELS
from tensorsharp.server.protocol.openai import ROLES as OPENAI_ROLES
from tensorsharp.server.protocol.responses import EFFORTS, MESSAGE_ROLES, SUMMARIES


def _obj(properties: dict, required: tuple = ()) -> dict:
    out = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
STR = {"type": "string"}
STOP = {"oneOf": [STR, {"type": "array", "items": STR}]}
ANY_OBJECT = {"type": "object", "additionalProperties": True}
FUNCTION_TOOL = _obj({"type": {"type": "string", "enum": ["function"]},
                      "function": _obj({"name": STR, "description": STR, "parameters": ANY_OBJECT}, ("name",))},
                     ("type", "function"))
OPENAI_CALL = _obj({"id": STR, "type": {"type": "string", "enum": ["function"]},
                    "function": _obj({"name": STR, "arguments": STR}, ("name",))}, ("function",))
OLLAMA_CALL = _obj({"function": _obj({"name": STR, "arguments": ANY_OBJECT}, ("name",))}, ("function",))
CONTENT_PART = {"oneOf": [_obj({"type": {"type": "string", "enum": ["text"]}, "text": STR}, ("type", "text")),
                          _obj({"type": {"type": "string", "enum": ["image_url"]},
                                "image_url": _obj({"url": STR}, ("url",))}, ("type", "image_url"))]}
OPENAI_MESSAGE = _obj({"role": {"type": "string", "enum": sorted(OPENAI_ROLES)},
                       "content": {"oneOf": [STR, {"type": "array", "items": CONTENT_PART}], "nullable": True},
                       "tool_calls": {"type": "array", "items": OPENAI_CALL}, "tool_call_id": STR, "name": STR},
                      ("role",))
OLLAMA_MESSAGE = _obj({"role": {"type": "string", "enum": sorted(OLLAMA_ROLES)}, "content": STR,
                       "images": {"type": "array", "items": {"type": "string", "format": "byte"}},
                       "tool_calls": {"type": "array", "items": OLLAMA_CALL}, "tool_name": STR}, ("role",))
SAMPLING = {"temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1}, "top_k": {"type": "integer", "minimum": 0},
            "min_p": {"type": "number", "minimum": 0, "maximum": 1}, "seed": INT,
            "repeat_penalty": {"type": "number", "minimum": 0.01},
            "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
            "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2}, "stop": STOP}
OLLAMA_OPTIONS = _obj({**SAMPLING, "num_predict": {"type": "integer", "minimum": -2},
                       "num_ctx": {"type": "integer", "minimum": 1},
                       "repeat_last_n": {"type": "integer", "minimum": -1},
                       "presence_penalty": NUM, "frequency_penalty": NUM})
FORMAT = {"oneOf": [{"type": "string", "enum": ["json"]}, ANY_OBJECT]}
THINK = {"oneOf": [BOOL, {"type": "string", "enum": list(OLLAMA_THINK_LEVELS)}]}
OLLAMA_LOGPROBS = {"logprobs": BOOL, "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20}}

OPENAI_CHAT = _obj({
    "model": STR, "messages": {"type": "array", "items": OPENAI_MESSAGE, "minItems": 1},
    "max_tokens": {"type": "integer", "minimum": 0}, "max_completion_tokens": {"type": "integer", "minimum": 0},
    "n": {"type": "integer", "minimum": 1}, "stream": BOOL, "stream_options": _obj({"include_usage": BOOL}),
    "logprobs": BOOL, "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
    "logit_bias": {"type": "object", "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}},
    "response_format": _obj({"type": {"type": "string", "enum": ["text", "json_object", "json_schema"]},
                             "json_schema": _obj({"name": STR, "schema": ANY_OBJECT, "strict": BOOL})}, ("type",)),
    "tools": {"type": "array", "items": FUNCTION_TOOL},
    "tool_choice": {"oneOf": [{"type": "string", "enum": ["none", "auto", "required"]},
                              _obj({"type": {"type": "string", "enum": ["function"]},
                                    "function": _obj({"name": STR}, ("name",))}, ("type", "function"))]},
    "parallel_tool_calls": BOOL, "chat_template_kwargs": _obj({"enable_thinking": BOOL, "thinking": BOOL}),
    **SAMPLING}, ("model", "messages"))
OPENAI_COMPLETION = _obj({
    "model": STR,
    "prompt": {"oneOf": [STR, {"type": "array", "items": STR}, {"type": "array", "items": {"type": "integer", "minimum": 0}},
                         {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}}}]},
    "max_tokens": {"type": "integer", "minimum": 0}, "n": {"type": "integer", "minimum": 1}, "stream": BOOL,
    "stream_options": _obj({"include_usage": BOOL}), "echo": BOOL,
    "logprobs": {"type": "integer", "minimum": 0, "maximum": 5}, **SAMPLING}, ("model", "prompt"))
INPUT_PART = {"oneOf": [
    _obj({"type": {"type": "string", "enum": ["input_text", "output_text"]}, "text": STR}, ("type", "text")),
    _obj({"type": {"type": "string", "enum": ["input_image"]}, "image_url": STR,
          "detail": {"type": "string", "enum": ["auto", "low", "high"]}}, ("type", "image_url"))]}
INPUT_ITEM = {"oneOf": [
    _obj({"type": {"type": "string", "enum": ["message"]}, "role": {"type": "string", "enum": list(MESSAGE_ROLES)},
          "content": {"oneOf": [STR, {"type": "array", "items": INPUT_PART}]}}, ("role", "content")),
    _obj({"type": {"type": "string", "enum": ["function_call"]}, "call_id": STR, "name": STR, "arguments": STR},
         ("type", "call_id", "name", "arguments")),
    _obj({"type": {"type": "string", "enum": ["function_call_output"]}, "call_id": STR, "output": STR},
         ("type", "call_id", "output")),
    _obj({"type": {"type": "string", "enum": ["reasoning"]}, "id": STR,
          "summary": {"type": "array", "items": _obj({"type": STR, "text": STR}, ("type", "text"))}},
         ("type", "summary"))]}
RESPONSES = _obj({
    "model": STR, "input": {"oneOf": [STR, {"type": "array", "items": INPUT_ITEM, "minItems": 1}]},
    "instructions": STR, "previous_response_id": STR, "store": BOOL, "stream": BOOL,
    "max_output_tokens": {"type": "integer", "minimum": 1},
    "temperature": SAMPLING["temperature"], "top_p": SAMPLING["top_p"], "parallel_tool_calls": BOOL,
    "tools": {"type": "array", "items": _obj({"type": {"type": "string", "enum": ["function"]}, "name": STR,
                                              "description": STR, "parameters": ANY_OBJECT, "strict": BOOL},
                                             ("type", "name"))},
    "tool_choice": {"oneOf": [{"type": "string", "enum": ["none", "auto", "required"]},
                              _obj({"type": {"type": "string", "enum": ["function"]}, "name": STR}, ("type", "name"))]},
    "text": _obj({"format": {"oneOf": [
        _obj({"type": {"type": "string", "enum": ["text", "json_object"]}}, ("type",)),
        _obj({"type": {"type": "string", "enum": ["json_schema"]}, "name": STR, "schema": ANY_OBJECT, "strict": BOOL},
             ("type", "schema"))]}}),
    "reasoning": _obj({"effort": {"type": "string", "enum": list(EFFORTS)},
                       "summary": {"type": "string", "enum": list(SUMMARIES)}}),
    "metadata": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 512}, "maxProperties": 16},
    "include": {"type": "array", "items": STR}, "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
    "user": STR}, ("model", "input"))
OLLAMA_GENERATE = _obj({"model": STR, "prompt": STR, "system": STR, "template": STR, "raw": BOOL, "stream": BOOL,
                        "format": FORMAT, "options": OLLAMA_OPTIONS, "think": THINK, **OLLAMA_LOGPROBS,
                        "context": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                        "images": {"type": "array", "items": {"type": "string", "format": "byte"}}}, ("model",))
OLLAMA_CHAT = _obj({"model": STR, "messages": {"type": "array", "items": OLLAMA_MESSAGE}, "stream": BOOL,
                    "format": FORMAT, "options": OLLAMA_OPTIONS, "think": THINK, **OLLAMA_LOGPROBS,
                    "tools": {"type": "array", "items": FUNCTION_TOOL}}, ("model", "messages"))
WEBUI_CHAT = _obj({"messages": {"type": "array", "items": _obj({
                       "role": {"type": "string", "enum": ["system", "user", "assistant", "tool"]}, "content": STR,
                       "images": {"type": "array", "items": STR}}, ("role",)), "minItems": 1},
                   "sessionId": STR, "newChat": BOOL, "think": BOOL, "tools": {"type": "array", "items": FUNCTION_TOOL},
                   "maxTokens": {"type": "integer", "minimum": 1}, "temperature": SAMPLING["temperature"],
                   "topP": SAMPLING["top_p"], "topK": SAMPLING["top_k"], "systemPrompt": STR}, ("messages",))
TOKENIZE = _obj({"model": STR, "content": STR, "add_special": BOOL, "parse_special": BOOL, "with_pieces": BOOL},
               ("content",))
DETOKENIZE = _obj({"model": STR, "tokens": {"type": "array", "items": {"type": "integer", "minimum": 0}}})
RESPONSE_ID = {"name": "response_id", "in": "path", "required": True, "schema": STR}
ITEM_PAGE = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
             {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"]}},
             {"name": "after", "in": "query", "schema": STR}]
ERROR = {"oneOf": [_obj({"error": STR}, ("error",)),
                   _obj({"error": _obj({"message": STR, "type": STR, "param": {"type": "string", "nullable": True},
                                        "code": {"type": "string", "nullable": True}}, ("message",))}, ("error",))]}


def _json_body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _responses(*types: str) -> dict:
    ok = {t: {"schema": {}} for t in types} or {"application/json": {"schema": ANY_OBJECT}}
    err = {"description": "refused, in the route's dialect", "content": {"application/json": {"schema": ERROR}}}
    return {"200": {"description": "success", "content": ok}, "4XX": err, "503": err}


IDS = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}
TEXTS = {"oneOf": [STR, {"type": "array", "items": STR, "minItems": 1}]}
OPENAI_EMBEDDINGS = _obj({"model": STR, "input": {"oneOf": [STR, {"type": "array", "items": STR, "minItems": 1}, IDS,
                                                            {"type": "array", "items": IDS, "minItems": 1}]},
                          "encoding_format": {"type": "string", "enum": ["float", "base64"]},
                          "dimensions": {"type": "integer", "minimum": 1}, "user": STR}, ("model", "input"))
OLLAMA_EMBED = _obj({"model": STR, "input": TEXTS, "truncate": BOOL, "dimensions": {"type": "integer", "minimum": 1},
                     "options": ANY_OBJECT, "keep_alive": {"oneOf": [STR, NUM]}}, ("model", "input"))
OLLAMA_EMBEDDINGS = _obj({"model": STR, "prompt": STR, "options": ANY_OBJECT,
                          "keep_alive": {"oneOf": [STR, NUM]}}, ("model", "prompt"))


def _op(summary: str, body: dict | None = None, *types: str) -> dict:
    op = {"summary": summary, "responses": _responses(*types)}
    if body is not None:
        op["requestBody"] = _json_body(body)
    return op


def document(models: list[str] | None = None) -> dict:
    """The document; models, when given, are the names the model field takes."""
    model = {"type": "string", "enum": models} if models else STR
    return _with_model(_document(), model)


def _with_model(tree, model: dict):
    """tree with every request's "model" property given the served names."""
    if isinstance(tree, dict):
        return {k: (model if k == "model" and v is STR else _with_model(v, model)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_with_model(v, model) for v in tree]
    return tree


def _document() -> dict:
    try:
        version = metadata.version("tensorsharp")
    except metadata.PackageNotFoundError:
        version = "unknown"
    json_t, sse, ndjson = "application/json", "text/event-stream", "application/x-ndjson"
    return {
        "openapi": "3.0.3",
        "info": {"title": "tensorsharp", "version": version,
                 "description": "Ollama, OpenAI and web UI dialects over one local model."},
        "paths": {
            "/health": {"get": _op("Whether the engine serves")},
            "/api/version": {"get": _op("Server version")},
            "/metrics": {"get": _op("Prometheus metrics", None, "text/plain")},
            "/tokenize": {"post": _op("llama-server: text to token ids", TOKENIZE)},
            "/detokenize": {"post": _op("llama-server: token ids to text", DETOKENIZE)},
            "/v1/models": {"get": _op("OpenAI: the served models")},
            "/v1/models/{name}": {"get": {**_op("OpenAI: one model"), "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": STR}]}},
            "/v1/chat/completions": {"post": _op("OpenAI: chat", OPENAI_CHAT, json_t, sse)},
            "/v1/completions": {"post": _op("OpenAI: text completion", OPENAI_COMPLETION, json_t, sse)},
            "/v1/embeddings": {"post": _op("OpenAI: embeddings", OPENAI_EMBEDDINGS, json_t)},
            "/api/embed": {"post": _op("Ollama: embeddings", OLLAMA_EMBED, json_t)},
            "/api/embeddings": {"post": _op("Ollama: one embedding (legacy, not normalised)", OLLAMA_EMBEDDINGS, json_t)},
            "/v1/responses": {"post": _op("OpenAI: a response", RESPONSES, json_t, sse)},
            "/v1/responses/{response_id}": {"parameters": [RESPONSE_ID], "get": _op("OpenAI: a stored response"),
                                            "delete": _op("OpenAI: delete a stored response")},
            "/v1/responses/{response_id}/input_items": {"get": {**_op("OpenAI: a stored response's input items"),
                                                                "parameters": [RESPONSE_ID, *ITEM_PAGE]}},
            "/api/tags": {"get": _op("Ollama: local models")},
            "/api/ps": {"get": _op("Ollama: loaded models")},
            "/api/show": {"post": _op("Ollama: model details", _obj({"model": STR, "name": STR}))},
            "/api/generate": {"post": _op("Ollama: generate", OLLAMA_GENERATE, json_t, ndjson)},
            "/api/chat": {"post": _op("Ollama chat (a body with model) or the web UI's chat (without)",
                                      {"oneOf": [OLLAMA_CHAT, WEBUI_CHAT]}, json_t, ndjson, sse)},
            "/api/chat/ollama": {"post": _op("Ollama: chat", OLLAMA_CHAT, json_t, ndjson)},
            "/api/sessions": {"post": _op("Web UI: a new session")},
            "/api/sessions/{sid}": {"delete": {**_op("Web UI: end a session"), "parameters": [
                {"name": "sid", "in": "path", "required": True, "schema": STR}]}},
            "/api/models": {"get": _op("Web UI: the served model")},
            "/api/upload": {"post": {**_op("Web UI: upload a file"), "requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": _obj({"file": {"type": "string", "format": "binary"}}, ("file",))}}}}},
            "/api/queue/status": {"get": _op("Engine queue and slots")},
            "/openapi.json": {"get": _op("This document")},
        },
    }
