"""A Job on the engine as a route sees it: prompt ids checked, requests submitted, text into replies.

Routes call Generation(...) (errors up to here are real HTTP statuses), optionally wait_started()
(so a request that fails while queued still gets one), then render events(): the engine's
Queued / Started / Done / Failed, with each Token's text already fed through the choice's Reply.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tensorsharp.engine.request import Done, Failed, GenerationRequest, Started, Token
from tensorsharp.server.bridge import EngineEvents
from tensorsharp.server.errors import ApiError, from_engine
from tensorsharp.server.model import ServedModel
from tensorsharp.server.protocol.common import Job
from tensorsharp.server.reply import Reply


@dataclass
class Output:
    """Reply deltas of one choice: from one token's text, or (token None) the parser's final flush."""
    token: Token | None
    deltas: list


def new_reply(served: ServedModel, job: Job) -> Reply:
    """The one place a request's reply parser is chosen (plain text until chat formats plug in)."""
    return Reply()


def constraint_for(served: ServedModel, job: Job):
    """The engine constraint that makes output follow job.format, or None without one."""
    if job.format is None:
        return None
    raise ApiError(501, "structured output (format / response_format) is not available in this build",
                   param="response_format", code="not_implemented")


def prompt_ids(served: ServedModel, job: Job) -> list[int]:
    if job.messages is not None:
        return served.tokenize_prompt(served.render(job.messages, job.tools, job.think))
    if isinstance(job.prompt, str):
        return served.tokenize_prompt(job.prompt)
    ids = [int(t) for t in job.prompt or ()]
    try:
        served.check_ids(ids)
    except ValueError as e:
        raise ApiError(400, str(e), param="prompt") from None
    return ids


class Generation:
    """n choices of one job, submitted together; iterate events() in the request's greenlet."""

    def __init__(self, served: ServedModel, job: Job, n: int = 1, environ: dict | None = None):
        if job.images and not served.supports_images:
            raise ApiError(400, f"model {served.name} does not support images", param="messages")
        self.served = served
        self.ids = prompt_ids(served, job)
        if not self.ids:
            raise ApiError(400, "the prompt is empty", param="prompt")
        limit = min(served.n_ctx, job.n_ctx) if job.n_ctx else served.n_ctx
        if len(self.ids) >= limit:
            raise ApiError(400, f"the prompt is {len(self.ids)} tokens but the context holds {limit} "
                           f"(prompt and reply together)", param="messages", code="context_length_exceeded")
        room = limit - len(self.ids)
        self.max_tokens = room if job.max_tokens is None else min(job.max_tokens, room)
        self.replies = [new_reply(served, job) for _ in range(n)]
        requests = []
        for i in range(n):
            sampling = job.sampling
            if n > 1 and sampling.seed is not None:   # n seeded choices should still differ
                sampling = dataclasses.replace(sampling, seed=sampling.seed + i)
            requests.append(GenerationRequest(self.ids, self.max_tokens, sampling, list(job.stop),
                                              session=job.session, reuse_prefix=job.reuse_prefix,
                                              constraint=constraint_for(served, job)))
        try:
            self._events = EngineEvents(served.scheduler, requests, environ)
        except Exception as e:
            raise from_engine(e) from None
        self._iter = iter(self._events)
        self._held: list = []

    def wait_started(self) -> list[Started]:
        """Waits (in the queue) until every choice has started; ApiError if one fails first."""
        started = {}
        while len(started) < len(self.replies):
            try:
                index, event = next(self._iter)
            except StopIteration:
                raise ApiError(499, "the request was cancelled") from None
            if isinstance(event, Failed):
                self.close()
                raise from_engine(event.error)
            if isinstance(event, Started):
                started[index] = event
            self._held.append((index, event))
        return [started[i] for i in range(len(self.replies))]

    def events(self):
        """(index, event) until every choice ends; Token events arrive as Output."""
        try:
            for index, event in self._pending():
                reply = self.replies[index]
                if isinstance(event, Token):
                    yield index, Output(event, reply.feed(event.text))
                    continue
                if isinstance(event, Done):
                    tail = reply.finish()
                    if tail:
                        yield index, Output(None, tail)
                yield index, event
        finally:
            self.close()

    def _pending(self):
        while self._held:
            yield self._held.pop(0)
        yield from self._iter

    @property
    def client_gone(self) -> bool:
        return self._events.client_gone

    def close(self) -> None:
        self._events.close()
