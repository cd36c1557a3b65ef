"""OpenAI routes: /v1/chat/completions, /v1/completions, /v1/models."""
from __future__ import annotations

import dataclasses

import gevent
from flask import Blueprint, request

from tensorsharp.chat.output import ContentDelta, ThinkingDelta
from tensorsharp.engine.request import Done, Failed
from tensorsharp.server.created import openai_body, openai_job
from tensorsharp.server.app import body, json_response, state
from tensorsharp.server.errors import ApiError, from_engine
from tensorsharp.server.generation import Generation, Output
from tensorsharp.server.protocol import openai as oa
from tensorsharp.server.streaming import SSE_DONE, FrameTemplate, sse_line, sse_response

bp = Blueprint("openai", __name__)


class _Usage:
    """Prompt counted once, completions summed over choices."""

    def __init__(self):
        self.prompt = self.cached = self.completion = 0

    def add(self, done: Done) -> None:
        self.prompt, self.cached = done.prompt_tokens, done.cached_tokens
        self.completion += done.completion_tokens

    def add_prompt(self, other: "_Usage") -> None:
        self.prompt += other.prompt
        self.cached += other.cached
        self.completion += other.completion

    def dict(self) -> dict:
        return oa.usage(self.prompt, self.completion, self.cached)


@bp.get("/v1/models")
def list_models():
    return json_response(oa.models(state().listing()))


@bp.get("/v1/models/<path:name>")
def get_model(name: str):
    st = state()
    spec = st.find(name)
    return json_response(oa.model_entry(spec, gevent.get_hub().threadpool.apply(st.catalog.facts, (spec,))))


@bp.post("/v1/chat/completions")
def chat_completions():
    st = state()
    data = body()
    spec = st.spec_named(data.get("model"))
    req = oa.parse_chat(openai_body(spec, data, "chat"))
    req.job = openai_job(spec, req.job)
    served = st.require_generator(req.model, "chat")
    gen = Generation(served, req.job, n=req.n, environ=request.environ)
    gen.wait_started()
    cid, created = oa.new_id("chatcmpl"), oa.now()
    if req.stream:
        return sse_response(_chat_stream(gen, req, cid, created, served), on_close=gen.close)
    return json_response(_chat_result(gen, req, cid, created, served))


def _chat_result(gen: Generation, req: oa.ChatRequest, cid: str, created: int, served) -> dict:
    logprobs = [[] for _ in range(req.n)] if req.logprobs else None
    done: dict[int, Done] = {}
    usage = _Usage()
    for index, ev in gen.events():
        if isinstance(ev, Output) and logprobs is not None and ev.token is not None:
            logprobs[index].append(oa.token_logprob(served.tokenizer, ev.token, req.top_logprobs))
        elif isinstance(ev, Done):
            done[index] = ev
            usage.add(ev)
        elif isinstance(ev, Failed):
            raise from_engine(ev.error)
    choices = [oa.chat_choice(i, gen.replies[i], gen.replies[i].finish_reason(done[i].reason),
                              logprobs[i] if logprobs is not None else None) for i in range(req.n)]
    return oa.chat_completion(cid, served.name, created, oa.fingerprint(served), choices, usage.dict())


def _chat_stream(gen: Generation, req: oa.ChatRequest, cid: str, created: int, served):
    fp = oa.fingerprint(served)

    def chunk(index, delta, **kw):
        return sse_line(oa.chunk(cid, served.name, created, fp, index, delta, with_usage=req.include_usage, **kw))

    # Each choice's text and reasoning chunks without log-probs, encoded once (most of a stream).
    frames = [{kind: FrameTemplate(lambda text, i=i, kind=kind: oa.chunk(
        cid, served.name, created, fp, i, oa.delta(kind(text)), with_usage=req.include_usage), sse_line)
        for kind in (ContentDelta, ThinkingDelta)} for i in range(req.n)]
    usage = _Usage()
    for i in range(req.n):
        yield chunk(i, {"role": "assistant", "content": ""})
    for index, ev in gen.events():
        if isinstance(ev, Output):
            lp = None
            if req.logprobs and ev.token is not None:
                lp = [oa.token_logprob(served.tokenizer, ev.token, req.top_logprobs)]
            if lp is None:
                for d in ev.deltas:
                    template = frames[index].get(type(d))
                    yield template(d.text) if template is not None else chunk(index, oa.delta(d))
                continue
            # A token whose text is still held back has no delta but does have a logprob.
            deltas = [oa.delta(d) for d in ev.deltas] or [{"content": ""}]
            for j, d in enumerate(deltas):
                yield chunk(index, d, logprobs=lp if j == 0 else None)
        elif isinstance(ev, Done):
            usage.add(ev)
            yield chunk(index, {}, finish_reason=gen.replies[index].finish_reason(ev.reason))
        elif isinstance(ev, Failed):
            yield sse_line(from_engine(ev.error).openai())
            break
    else:
        if req.include_usage:
            yield sse_line(oa.usage_chunk(cid, served.name, created, fp, usage.dict()))
    yield SSE_DONE


@bp.post("/v1/completions")
def completions():
    st = state()
    data = body()
    spec = st.spec_named(data.get("model"))
    req = oa.parse_completion(openai_body(spec, data, "completions"))
    req.job = openai_job(spec, req.job)
    served = st.require_generator(req.model, "completions")
    gens = []
    # Every prompt x n choice of one request is one place in the queue and one fair share: a list
    # of prompts longer than the queue is one client's work, not a full server.
    group = object() if len(req.prompts) * req.n > 1 else None
    try:
        for prompt in req.prompts:
            job = dataclasses.replace(req.job, prompt=prompt)
            gens.append(Generation(served, job, n=req.n, environ=request.environ, group=group))
        for g in gens:
            g.wait_started()
    except ApiError:
        for g in gens:
            g.close()
        raise
    cid, created = oa.new_id("cmpl"), oa.now()
    if req.stream:
        return sse_response(_completion_stream(gens, req, cid, created, served),
                            on_close=lambda: [g.close() for g in gens])
    return json_response(_completion_result(gens, req, cid, created, served))


def _echo(served, prompt) -> str:
    return prompt if isinstance(prompt, str) else served.tokenizer.decode(prompt)


def _completion_result(gens: list[Generation], req: oa.CompletionRequest, cid: str, created: int, served) -> dict:
    choices, total = [], _Usage()
    for p, gen in enumerate(gens):
        tokens = [[] for _ in range(req.n)]
        done: dict[int, Done] = {}
        usage = _Usage()
        for index, ev in gen.events():
            if isinstance(ev, Output) and ev.token is not None:
                tokens[index].append(ev.token)
            elif isinstance(ev, Done):
                done[index] = ev
                usage.add(ev)
            elif isinstance(ev, Failed):
                raise from_engine(ev.error)
        total.add_prompt(usage)
        prefix = _echo(served, req.prompts[p]) if req.echo else ""
        for i in range(req.n):
            lp = None
            if req.logprobs is not None:
                lp = oa.text_logprobs(served.tokenizer, tokens[i], req.logprobs, len(prefix))
            choices.append(oa.text_choice(p * req.n + i, prefix + gen.replies[i].content, done[i].reason, lp))
    return oa.text_completion(cid, served.name, created, oa.fingerprint(served), choices, total.dict())


def _completion_stream(gens: list[Generation], req: oa.CompletionRequest, cid: str, created: int, served):
    fp = oa.fingerprint(served)

    def chunk(index, text, reason=None, lp=None):
        return sse_line(oa.text_completion(cid, served.name, created, fp, [oa.text_choice(index, text, reason, lp)],
                                           None))

    texts: dict[int, FrameTemplate] = {}   # a choice's chunks of text alone, encoded once
    total = _Usage()
    for p, gen in enumerate(gens):
        usage = _Usage()
        if req.echo:
            for i in range(req.n):
                yield chunk(p * req.n + i, _echo(served, req.prompts[p]))
        for index, ev in gen.events():
            at = p * req.n + index
            if isinstance(ev, Output):
                text = "".join(d.text for d in ev.deltas if hasattr(d, "text"))
                lp = None
                if req.logprobs is not None and ev.token is not None:
                    lp = oa.text_logprobs(served.tokenizer, [ev.token], req.logprobs, 0)
                if lp:
                    yield chunk(at, text, lp=lp)
                elif text:
                    if at not in texts:
                        texts[at] = FrameTemplate(lambda t, at=at: chunk(at, t), str)
                    yield texts[at](text)
            elif isinstance(ev, Done):
                usage.add(ev)
                yield chunk(at, "", ev.reason)
            elif isinstance(ev, Failed):
                yield sse_line(from_engine(ev.error).openai())
                yield SSE_DONE
                return
        total.add_prompt(usage)
    if req.include_usage:
        yield sse_line(oa.usage_chunk(cid, served.name, created, fp, total.dict(), obj="text_completion"))
    yield SSE_DONE
