"""OpenAI Responses routes: POST /v1/responses (streamed or not), GET and DELETE /v1/responses/{id},
GET /v1/responses/{id}/input_items."""
from __future__ import annotations

import dataclasses
import itertools

from flask import Blueprint, current_app, request

from tensorsharp.chat.output import ThinkingDelta
from tensorsharp.engine.request import Done, Failed
from tensorsharp.server.created import openai_body, openai_job
from tensorsharp.server.app import body, json_response, state
from tensorsharp.server.errors import ApiError, from_engine
from tensorsharp.server.generation import Generation, Output
from tensorsharp.server.protocol import responses as rp
from tensorsharp.server.protocol.openai import now, token_logprob
from tensorsharp.server.protocol.responses_events import OutputBuilder
from tensorsharp.server.response_store import ResponseStore, Stored
from tensorsharp.server.streaming import FrameTemplate, sse_event, sse_response

bp = Blueprint("responses", __name__)
_KEY = "tensorsharp.responses"
_FIELDS = {"messages": "input", "response_format": "text.format"}   # chat's field names, as named here
_TEXT_DELTAS = frozenset({"response.output_text.delta", "response.reasoning_text.delta",
                          "response.reasoning_summary_text.delta"})


@bp.record_once
def _create_store(setup) -> None:
    setup.app.extensions[_KEY] = ResponseStore()


def store() -> ResponseStore:
    return current_app.extensions[_KEY]


def _stored(rid: str) -> Stored:
    s = store().get(rid)
    if s is None:
        raise ApiError(404, f"Response with id '{rid}' not found.", param="response_id")
    return s


@bp.post("/v1/responses")
def create():
    data = body()
    spec = state().spec_named(data.get("model"))
    req = rp.parse_request(openai_body(spec, data, "responses"))
    req.job = openai_job(spec, req.job)
    served = state().require_generator(req.model, "responses")
    if req.job.think and not served.supports_thinking:   # as the API answers for a model that does not reason
        raise ApiError(400, f"'reasoning.effort' is not supported with {served.name}: it does not think",
                       param="reasoning.effort", code="unsupported_parameter")
    previous = None
    if req.previous_response_id is not None:
        previous = store().get(req.previous_response_id)
        if previous is None:
            raise ApiError(404, f"Previous response with id '{req.previous_response_id}' not found.",
                           param="previous_response_id", code="previous_response_not_found")
    history, images = previous.history() if previous is not None else ([], [])
    rp.name_results(req.messages, history)   # results of the calls the previous response made
    system = [{"role": "system", "content": req.instructions}] if req.instructions else []
    rid = rp.new_id("resp")
    # Every turn of a stored conversation asks for the same KV slot, which holds its prefix.
    session = previous.conversation if previous is not None else (rid if req.store else None)
    job = dataclasses.replace(req.job, messages=system + history + req.messages, images=images + req.images,
                              session=session)
    try:
        gen = Generation(served, job, environ=request.environ)
        gen.wait_started()
    except ApiError as e:   # the shared checks name the chat dialect's fields
        e.param = _FIELDS.get(e.param, e.param)
        raise
    run = _Run(gen, req, rid, served, previous, store() if req.store else None)
    if req.stream:
        frames = _Frames()
        return sse_response((frames(e) for e in run.events()), on_close=gen.close)
    for _ in run.events():
        pass
    if run.error is not None:   # before the first byte: a real status
        raise run.error
    return json_response(run.final)


class _Frames:
    """A stream's events as SSE frames. Text deltas are most of a stream and differ within an item
    only in their text and sequence number: each item's are filled into its frame, encoded once."""

    def __init__(self):
        self._templates: dict[tuple, FrameTemplate] = {}

    def __call__(self, event: dict) -> str:
        if event["type"] not in _TEXT_DELTAS or event.get("logprobs"):
            return sse_event(event)
        key = event["type"], event["item_id"]
        template = self._templates.get(key)
        if template is None:
            fixed = dict(event)
            template = self._templates[key] = FrameTemplate(
                lambda delta, seq: {**fixed, "delta": delta, "sequence_number": seq}, sse_event, 2)
        return template(event["delta"], event["sequence_number"])


class _Run:
    """One response being generated: its events, numbered, ending in the final response object,
    which is stored (when asked) before the last event is sent."""

    def __init__(self, gen: Generation, req: rp.ResponsesRequest, rid: str, served, previous: Stored | None,
                 kept: ResponseStore | None):
        self.gen, self.req, self.rid, self.previous, self.kept = gen, req, rid, previous, kept
        self.model, self.tokenizer = served.name, served.tokenizer
        self.created_at = now()
        self.builder = OutputBuilder(req.summary)
        self.final: dict | None = None
        self.error: ApiError | None = None
        self._seq = itertools.count()

    def _response(self, status: str, **kw) -> dict:
        return rp.response(self.rid, self.created_at, self.model, self.req.settings, status,
                           list(self.builder.output), **kw)

    def _numbered(self, events: list[dict]) -> list[dict]:
        for e in events:
            e["sequence_number"] = next(self._seq)
        return events

    def events(self):
        start = self._response("in_progress", use=None)
        yield from self._numbered([{"type": "response.created", "response": start},
                                   {"type": "response.in_progress", "response": start}])
        reasoning_tokens = 0
        for _, ev in self.gen.events():
            if isinstance(ev, Output):
                if ev.token is not None and any(isinstance(d, ThinkingDelta) for d in ev.deltas):
                    reasoning_tokens += 1
                lp = None
                if self.req.logprobs and ev.token is not None:
                    lp = token_logprob(self.tokenizer, ev.token, self.req.top_logprobs)
                yield from self._numbered(self.builder.feed(ev.deltas, lp))
            elif isinstance(ev, Done):
                yield from self._numbered(self._done(ev, reasoning_tokens))
            elif isinstance(ev, Failed):
                yield from self._numbered(self._failed(from_engine(ev.error)))

    def _done(self, ev: Done, reasoning_tokens: int) -> list[dict]:
        # "length" is the output limit or the context filling up; the API names only the former,
        # which is also the room the context left.
        status = {"stop": "completed", "length": "incomplete"}.get(ev.reason, "cancelled")
        events = self.builder.finish("completed" if status == "completed" else "incomplete")
        use = rp.usage(ev.prompt_tokens, ev.cached_tokens, ev.completion_tokens, reasoning_tokens)
        self._end(self._response(status, use=use, incomplete="max_output_tokens" if status == "incomplete" else None,
                                 completed_at=now() if status == "completed" else None))
        if status == "cancelled":   # the client has gone
            return events
        return events + [{"type": f"response.{status}", "response": self.final}]

    def _failed(self, error: ApiError) -> list[dict]:
        self.error = error
        events = self.builder.finish("incomplete")
        events.append({"type": "error", "code": error.code, "message": error.message, "param": error.param})
        self._end(self._response("failed", use=None, error=rp.error_object(error.status, error.message)))
        return events + [{"type": "response.failed", "response": self.final}]

    def _end(self, final: dict) -> None:
        self.final = final
        if self.kept is not None:   # a stream has no app context: the store came along
            self.kept.put(Stored(final, self.req.items, self.req.messages + rp.as_turns(final["output"]),
                               self.req.images, self.previous))


@bp.get("/v1/responses/<response_id>")
def retrieve(response_id: str):
    return json_response(_stored(response_id).response)


@bp.delete("/v1/responses/<response_id>")
def delete(response_id: str):
    if not store().delete(response_id):
        raise ApiError(404, f"Response with id '{response_id}' not found.", param="response_id")
    return json_response(rp.deleted(response_id))


@bp.get("/v1/responses/<response_id>/input_items")
def input_items(response_id: str):
    s = _stored(response_id)
    limit = request.args.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise ApiError(400, "'limit' must be an integer between 1 and 100", param="limit")
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ApiError(400, "'order' must be asc or desc", param="order")
    return json_response(rp.item_list(s.items, int(limit), order, request.args.get("after")))
