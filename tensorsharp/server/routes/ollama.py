"""Ollama routes: /api/generate, /api/chat (and /api/chat/ollama), /api/tags, /api/show, /api/ps."""
from __future__ import annotations

from flask import Blueprint, request

from tensorsharp.chat.output import ContentDelta
from tensorsharp.engine.request import Done, Failed
from tensorsharp.server.created import ollama_body
from tensorsharp.server.app import KEEP_ALIVE, body, json_response, state
from tensorsharp.server.catalog import Header
from tensorsharp.server.errors import ApiError, from_engine
from tensorsharp.server.generation import Generation, Output
from tensorsharp.server.pool import off_hub
from tensorsharp.server.protocol import ollama as ol
from tensorsharp.server.protocol.common import token_logprob
from tensorsharp.server.protocol.fields import Fields
from tensorsharp.server.protocol.webui import is_webui_chat
from tensorsharp.server.routes import webui
from tensorsharp.server.streaming import FrameTemplate, ndjson_line, ndjson_response

bp = Blueprint("ollama", __name__)


@bp.get("/api/tags")
def tags():
    return json_response(ol.tags(state().listing()))


@bp.get("/api/ps")
def ps():
    return json_response(ol.ps(state().pool.loaded()))


@bp.post("/api/show")
def show():
    f = Fields(body())
    name = f.str("model") or f.str("name")
    if not name:
        raise ApiError(400, "'model' is required", param="model")
    st = state()
    spec = st.find(name)
    # A model not loaded is described from its file, as Ollama does: showing it loads nothing.
    model = st.pool.get(spec.name) or off_hub(Header, spec, st.n_ctx)
    return json_response(ol.show(model))


def _check_think(served, req: ol.Request) -> None:
    if req.job.think and not served.supports_thinking:   # as Ollama: asked to think, it cannot
        raise ApiError(400, f'"{req.model}" does not support thinking', param="think")


@bp.post("/api/generate")
def generate():
    req = ol.parse_generate(_with_model(body(), chat=False))
    if req.empty:
        return _load(req, chat=False)
    served = _hold(req, "generate")
    _check_think(served, req)
    gen = Generation(served, req.job, environ=request.environ)
    gen.wait_started()
    if req.stream:
        return ndjson_response(_stream(gen, req, chat=False), on_close=gen.close)
    return json_response(_result(gen, req, chat=False))


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
    req = ol.parse_chat(_with_model(data, chat=True))
    if req.empty:
        return _load(req, chat=True)
    served = _hold(req, "chat")
    _check_think(served, req)
    gen = Generation(served, req.job, environ=request.environ)
    gen.wait_started()
    if req.stream:
        return ndjson_response(_stream(gen, req, chat=True), on_close=gen.close)
    return json_response(_result(gen, req, chat=True))


def _with_model(data: dict, chat: bool) -> dict:
    return ollama_body(state().spec_named(data.get("model")), data, chat)


def _load(req: ol.Request, chat: bool):
    """A request without prompt or messages: loads the model, or with keep_alive 0 unloads it."""
    st = state()
    if req.keep_alive == 0:
        st.pool.unload(st.find(req.model).name)
        return json_response(ol.load_response(req.model, chat, unload=True))
    _hold(req)
    return json_response(ol.load_response(req.model, chat))


def _hold(req: ol.Request, what: str | None = None):
    """The request's model, held until the response ends; then kept loaded for its keep_alive.
    what: the generation asked of it ("generate", "chat"), which an embedding-only model refuses."""
    request.environ[KEEP_ALIVE] = req.keep_alive
    return state().require_generator(req.model, what) if what else state().require_model(req.model)


def _logprob(gen: Generation, req: ol.Request, ev: Output) -> dict | None:
    if not req.logprobs or ev.token is None:
        return None
    return token_logprob(gen.served.tokenizer, ev.token, req.top_logprobs)


def _context(gen: Generation, generated: list[int]) -> list[int] | None:
    """/api/generate's context: prompt and reply ids (none for a prompt with images, whose
    positions hold no token a client could send back)."""
    return None if -1 in gen.ids else gen.ids + generated


def _result(gen: Generation, req: ol.Request, chat: bool) -> dict:
    done, generated, logprobs = None, [], [] if req.logprobs else None
    for _, ev in gen.events():
        if isinstance(ev, Output) and ev.token is not None:
            generated.append(ev.token.id)
            if logprobs is not None:
                logprobs.append(_logprob(gen, req, ev))
        elif isinstance(ev, Done):
            done = ev
        elif isinstance(ev, Failed):
            raise from_engine(ev.error)
    reply = gen.replies[0]
    if chat:
        message = ol.chat_message(reply.content, reply.thinking, reply.tool_calls)
        return ol.chat_final(req.model, message, done, done.reason, logprobs)
    return ol.generate_final(req.model, reply.content, reply.thinking, done, done.reason,
                             _context(gen, generated), logprobs)


def _stream(gen: Generation, req: ol.Request, chat: bool):
    generated = []
    # A line of answer text alone (most of a stream), encoded once: its text and time vary.
    if chat:
        text_line = FrameTemplate(lambda text, at: ol.chat_chunk(req.model, [ContentDelta(text)], at=at),
                                  ndjson_line, 2)
    else:
        text_line = FrameTemplate(lambda text, at: ol.generate_chunk(req.model, [ContentDelta(text)], at=at),
                                  ndjson_line, 2)
    for _, ev in gen.events():
        if isinstance(ev, Output):
            lp = _logprob(gen, req, ev)
            if ev.token is not None:
                generated.append(ev.token.id)
            texts = [d.text for d in ev.deltas if type(d) is ContentDelta] if lp is None else ()
            if texts and len(texts) == len(ev.deltas):
                text = "".join(texts)
                if text:
                    yield text_line(text, ol.timestamp())
                continue
            logprobs = [lp] if lp is not None else None
            if chat:
                line = ol.chat_chunk(req.model, ev.deltas, logprobs)
                message = line["message"]
                if message["content"] or "thinking" in message or logprobs:
                    yield ndjson_line(line)
            else:
                line = ol.generate_chunk(req.model, ev.deltas, logprobs)
                if line["response"] or "thinking" in line or logprobs:
                    yield ndjson_line(line)
        elif isinstance(ev, Done):
            reply = gen.replies[0]
            if chat:
                if reply.tool_calls:
                    yield ndjson_line(ol.chat_chunk(req.model, [], calls=reply.tool_calls))
                yield ndjson_line(ol.chat_final(req.model, ol.chat_message(""), ev, ev.reason))
            else:
                yield ndjson_line(ol.generate_final(req.model, "", "", ev, ev.reason, _context(gen, generated)))
        elif isinstance(ev, Failed):
            yield ndjson_line(from_engine(ev.error).plain())
