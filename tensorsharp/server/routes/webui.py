"""Web UI routes (DESIGN.md section 4): SSE chat with sessions, models, uploads, queue status."""
from __future__ import annotations

import time

import gevent
from flask import Blueprint, request

from tensorsharp.engine.request import Done, Failed, Queued
from tensorsharp.server.app import json_response, state
from tensorsharp.server.errors import ApiError, from_engine
from tensorsharp.server.generation import Generation, Output
from tensorsharp.server.protocol import webui as wu
from tensorsharp.server.protocol.common import Image, Job
from tensorsharp.server.sessions import new_turns
from tensorsharp.server.streaming import sse_line, sse_response

bp = Blueprint("webui", __name__)


def chat(data: dict):
    """POST /api/chat with a web UI body (routed here by the Ollama chat route)."""
    req = wu.parse_chat(data)
    st = state()
    served = st.require_generator(req.model or st.default, "chat")
    if req.session_id is None:
        session = st.sessions.create()
    else:
        session = st.sessions.get(req.session_id)
        if session is None:
            raise ApiError(404, f"unknown session {req.session_id!r}; create one with POST /api/sessions")
    if session.busy:
        _supersede(session)
    for m in req.messages:
        if "images" in m:
            m["images"] = [_uploaded_image(uid) for uid in m["images"]]
    if req.new_chat:
        session.history.clear()
    turns = new_turns(session.history, req.messages)
    system = [{"role": "system", "content": req.system_prompt}] if req.system_prompt else []
    messages, images = wu.job_messages(system + session.history + turns)
    job = Job(messages=messages, max_tokens=req.max_tokens, sampling=req.sampling, tools=req.tools,
              think=req.think, session=session.id, images=images)
    gen = Generation(served, job, environ=request.environ)
    session.busy = True
    turn = session.turn = _Turn(gen, session, turns)
    return sse_response(turn.frames(), on_close=turn.settle)


def _uploaded_image(uid: str) -> Image:
    up = state().uploads.get(uid)
    try:
        data = up.path.read_bytes() if up is not None else None
    except OSError:   # deleted meanwhile to make room for newer uploads
        data = None
    if data is None:
        raise ApiError(400, f"unknown upload id {uid!r}; upload the image again", param="images")
    return Image.of(data)


def _supersede(session, wait_s: float = 5.0) -> None:
    """A new message while a reply is still running (the page stopped it, but the server has not
    yet seen the connection drop) replaces that reply: it is cancelled, which frees the engine
    within a token, and settles into the history before the new turn is read."""
    session.turn.gen.cancel()
    deadline = time.monotonic() + wait_s
    while session.busy and time.monotonic() < deadline:
        gevent.sleep(0.01)
    if session.busy:
        raise ApiError(409, f"session {session.id} is still finishing its previous reply; retry shortly",
                       headers={"Retry-After": "1"})


class _Turn:
    """One web UI chat turn: its frames, then (once, however the stream ends) the session update."""

    def __init__(self, gen: Generation, session, turns: list[dict]):
        self.gen, self.session, self.turns = gen, session, turns
        self.settled = False

    def frames(self):
        reply = self.gen.replies[0]
        try:
            yield sse_line({"sessionId": self.session.id})
            for _, ev in self.gen.events():
                if isinstance(ev, Queued):
                    yield sse_line({"queuePosition": ev.position})
                elif isinstance(ev, Output):
                    yield from wu.delta_frames(ev.deltas)
                elif isinstance(ev, Done):
                    if reply.tool_calls:
                        yield sse_line({"tool_calls": reply.tool_calls})
                    yield wu.done_frame(ev, reply.finish_reason(ev.reason))
                elif isinstance(ev, Failed):
                    yield sse_line({"error": from_engine(ev.error).message})
        finally:
            self.settle()   # at once, before the client can send its next turn

    def settle(self) -> None:
        if self.settled:
            return
        self.settled = True
        self.gen.close()
        reply, session = self.gen.replies[0], self.session
        # The turn is kept even when cut short: the KV slot holds what was generated so far.
        session.history += self.turns
        if reply.content or reply.tool_calls:
            turn = {"role": "assistant", "content": reply.content}
            if reply.tool_calls:
                turn["tool_calls"] = reply.tool_calls
            session.history.append(turn)
        session.busy = False
        session.turn = None


@bp.post("/api/sessions")
def create_session():
    return json_response({"sessionId": state().sessions.create().id})


@bp.delete("/api/sessions/<sid>")
def delete_session(sid: str):
    if not state().sessions.delete(sid):
        raise ApiError(404, f"unknown session {sid!r}")
    return json_response({"deleted": True})


@bp.get("/api/models")
def models():
    st = state()
    return json_response(wu.models(st.listing(), {e.name: e.served for e in st.pool.loaded()}, st.default))


@bp.post("/api/upload")
def upload():
    f = request.files.get("file")
    if f is None:
        raise ApiError(400, "send the file as multipart form field 'file'", param="file")
    return json_response(state().uploads.save(f.stream, f.filename, f.mimetype).describe())


@bp.get("/api/queue/status")
def queue_status():
    return json_response(wu.queue_status([e.served.scheduler.status() for e in state().pool.loaded()]))
