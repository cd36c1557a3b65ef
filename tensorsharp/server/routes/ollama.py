"""Ollama routes: /api/generate, /api/chat (and /api/chat/ollama), /api/tags, /api/show, /api/ps."""
from __future__ import annotations

from flask import Blueprint, request

from tensorsharp.engine.request import Done, Failed
from tensorsharp.server.app import body, json_response, state
from tensorsharp.server.errors import ApiError, from_engine
from tensorsharp.server.generation import Generation, Output
from tensorsharp.server.protocol import ollama as ol
from tensorsharp.server.protocol.fields import Fields
from tensorsharp.server.protocol.webui import is_webui_chat
from tensorsharp.server.routes import webui
from tensorsharp.server.streaming import ndjson_line, ndjson_response

bp = Blueprint("ollama", __name__)


@bp.get("/api/tags")
def tags():
    return json_response(ol.tags(state().served))


@bp.get("/api/ps")
def ps():
    return json_response(ol.ps(state().served))


@bp.post("/api/show")
def show():
    f = Fields(body())
    name = f.str("model") or f.str("name")
    if not name:
        raise ApiError(400, "'model' is required", param="model")
    return json_response(ol.show(state().require_model(name)))


@bp.post("/api/generate")
def generate():
    req = ol.parse_generate(body())
    served = state().require_generator(req.model, "generate")
    if req.empty:
        return json_response(ol.load_response(req.model, chat=False))
    gen = Generation(served, req.job, environ=request.environ)
    gen.wait_started()
    if req.stream:
        return ndjson_response(_stream(gen, req.model, chat=False), on_close=gen.close)
    return json_response(_result(gen, req.model, chat=False))


@bp.post("/api/chat")
def chat():
    data = body()
    if is_webui_chat(data):
        return webui.chat(data)
    return ollama_chat(data)


@bp.post("/api/chat/ollama")
def chat_ollama():
    return ollama_chat(body())


def ollama_chat(data: dict):
    req = ol.parse_chat(data)
    served = state().require_generator(req.model, "chat")
    gen = Generation(served, req.job, environ=request.environ)
    gen.wait_started()
    if req.stream:
        return ndjson_response(_stream(gen, req.model, chat=True), on_close=gen.close)
    return json_response(_result(gen, req.model, chat=True))


def _result(gen: Generation, model: str, chat: bool) -> dict:
    done = None
    for _, ev in gen.events():
        if isinstance(ev, Done):
            done = ev
        elif isinstance(ev, Failed):
            raise from_engine(ev.error)
    reply = gen.replies[0]
    if chat:
        message = ol.chat_message(reply.content, reply.thinking, reply.tool_calls)
        return ol.chat_final(model, message, done, done.reason)
    return ol.generate_final(model, reply.content, reply.thinking, done, done.reason)


def _stream(gen: Generation, model: str, chat: bool):
    for _, ev in gen.events():
        if isinstance(ev, Output):
            line = ol.chat_chunk(model, ev.deltas) if chat else ol.generate_chunk(model, ev.deltas)
            if line is not None and (chat or line["response"] or "thinking" in line):
                yield ndjson_line(line)
        elif isinstance(ev, Done):
            reply = gen.replies[0]
            if chat:
                yield ndjson_line(ol.chat_final(model, ol.chat_message("", "", reply.tool_calls), ev, ev.reason))
            else:
                yield ndjson_line(ol.generate_final(model, "", "", ev, ev.reason))
        elif isinstance(ev, Failed):
            yield ndjson_line(from_engine(ev.error).plain())
