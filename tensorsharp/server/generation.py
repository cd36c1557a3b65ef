"""A Job on the engine as a route sees it: prompt ids checked, requests submitted, text into replies.

Routes call Generation(...) (errors up to here are real HTTP statuses), optionally wait_started()
(so a request that fails while queued still gets one), then render events(): the engine's
Queued / Started / Done / Failed, with each Token's text already fed through the choice's Reply.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import gevent

from tensorsharp.chat.template import TemplateBudgetError, TemplateError
from tensorsharp.chat.schema import (MAX_SCHEMA_VALUES, OutputValidationError, SchemaError, check_schema,
                                     count_values, schema_instruction, validate_output)
from tensorsharp.engine.constraint import (ConstraintError, harmony_call_constraint, harmony_json_constraint,
                                           harmony_lazy_call_constraint, has_lltokenizer, json_schema_constraint,
                                           lazy_tool_call_constraint, tool_call_constraint)
from tensorsharp.engine.request import Done, Failed, GenerationRequest, Started, Token
from tensorsharp.server.bridge import EngineEvents
from tensorsharp.server.errors import ApiError, from_engine
from tensorsharp.server.images import splice
from tensorsharp.server.model import ServedModel
from tensorsharp.server.protocol.common import Job
from tensorsharp.server.reply import Reply


@dataclass
class Output:
    """Reply deltas of one choice: from one token's text, or (token None) the parser's final flush."""
    token: Token | None
    deltas: list


def _schema(job: Job) -> dict | None:
    """The JSON schema a format job's output follows; None: any JSON object."""
    return None if job.format == "json" else job.format


def check_job(job: Job) -> None:
    """Refuses what cannot be honoured, before anything is queued."""
    if job.tools and count_values(job.tools) > MAX_SCHEMA_VALUES:   # each compiles into the call grammar
        raise ApiError(400, f"the tools are too large: more than {MAX_SCHEMA_VALUES} values in their definitions",
                       param="tools")
    if job.format is None:
        return
    if job.tools:
        raise ApiError(400, "a response format cannot be combined with tools", param="response_format")
    if job.think:
        raise ApiError(400, "a response format cannot be combined with thinking", param="response_format")
    if job.format != "json":
        try:
            check_schema(job.format)
        except SchemaError as e:
            raise from_engine(e) from None


def _harmony_chat(served: ServedModel, job: Job) -> bool:
    """The reply is harmony messages (a GPT-OSS chat), its answer the final one's text."""
    return job.messages is not None and served.chat.family.channels


def new_reply(served: ServedModel, job: Job, prompt: str) -> Reply:
    """The one place a request's reply parser is chosen: JSON output is content as it is (but in a
    harmony chat, where it is the final message); chats (and prompts with a thinking choice) have
    reasoning and tool calls split out by the model's chat format, which needs the prompt's tail
    to know whether the answer starts inside reasoning."""
    if (job.format is not None and not _harmony_chat(served, job)) or (job.messages is None and job.think is None):
        return Reply()
    calls_only = bool(job.tools) and job.tool_choice is not None   # see constraint_for
    return Reply(served.chat.make_parser(tools=job.tools, think=job.think, prompt=prompt, calls_only=calls_only))


def constraint_for(served: ServedModel, job: Job):
    """The engine constraint that makes output follow job.format or a forced tool call, holds the
    calls of an auto reply to the tools offered, or None."""
    try:
        if job.format is not None:
            if _harmony_chat(served, job):
                return harmony_json_constraint(served.tokenizer, _schema(job))
            return json_schema_constraint(served.tokenizer, _schema(job))
        c = served.chat
        if job.tools and not c.call_grammar:   # harmony: calls are messages to a recipient
            if job.tool_choice is not None:
                return harmony_call_constraint(served.tokenizer, job.tools, job.tool_choice)
            return harmony_lazy_call_constraint(served.tokenizer, job.tools)
        if job.tools and job.tool_choice is not None:
            return tool_call_constraint(served.tokenizer, job.tools, job.tool_choice, prefix=c.call_prefix,
                                        suffix=c.call_suffix, arguments_key=c.arguments_key,
                                        as_array=c.calls_as_array, parallel=bool(job.parallel_tool_calls))
        if job.tools:   # auto: free text until the model opens a call
            return lazy_tool_call_constraint(served.tokenizer, job.tools, trigger=c.call_trigger,
                                             prefix=c.call_prefix, suffix=c.call_suffix,
                                             arguments_key=c.arguments_key, as_array=c.calls_as_array,
                                             bare_start=c.bare_call_start, bare_openings=c.bare_call_openings,
                                             free_markers=c.parser_markers(tools=True),
                                             parallel=job.parallel_tool_calls is not False)
    except ConstraintError as e:   # e.g. a tool whose parameters cannot be enforced
        raise from_engine(e) from None
    except RecursionError:
        raise ApiError(400, "a tool's parameters schema nests too deeply to be enforced", param="tools") from None
    return None


def _messages(job: Job) -> list[dict]:
    """The chat turns to render: with a response format, the system prompt shows the schema
    (models follow it better when shown it; the constraint is what guarantees it)."""
    if job.format is None:
        return job.messages
    note = schema_instruction(_schema(job))
    messages = list(job.messages)
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{note}"}
    else:
        messages.insert(0, {"role": "system", "content": note})
    return messages


def prompt_text(served: ServedModel, job: Job) -> str | None:
    """The prompt as text (None for a prompt given as token ids)."""
    if job.messages is None:
        return job.prompt if isinstance(job.prompt, str) else None
    try:
        return served.render(_messages(job), job.tools, job.think, job.reasoning_effort)
    except TemplateBudgetError as e:   # the model's template misbehaves, whatever the request
        raise ApiError(500, f"the chat template of {served.name} was stopped: {e}", code="template_error") from None
    except TemplateError as e:   # e.g. roles the template does not accept in that order
        raise ApiError(400, str(e), param="messages") from None


def prompt_ids(served: ServedModel, job: Job, text: str | None) -> tuple[list[int], list]:
    """The prompt's token ids (-1 at image positions) and the PromptImages filling those."""
    if job.context:
        return _after_context(served, job.context, *prompt_ids(served, dataclasses.replace(job, context=None), text))
    if job.images:
        return splice(served, text, job.images)
    if text is not None:
        return served.tokenize_prompt(text), []
    ids = [int(t) for t in job.prompt or ()]
    try:
        served.check_ids(ids)
    except ValueError as e:
        raise ApiError(400, str(e), param="prompt") from None
    return ids, []


def _after_context(served: ServedModel, context: list[int], ids: list[int], images: list) -> tuple[list[int], list]:
    """ids continuing the conversation context holds, which already opens with BOS."""
    try:
        served.check_ids(context)
    except ValueError as e:
        raise ApiError(400, f"'context': {e}", param="context") from None
    if ids and ids[0] == served.tokenizer.bos_id:
        ids = ids[1:]
    shift = len(context)
    return list(context) + ids, [dataclasses.replace(im, start=im.start + shift) for im in images]


def _client_chars(job: Job) -> int:
    """Characters of text the client sent for the prompt (messages or prompt)."""
    if isinstance(job.prompt, str):
        return len(job.prompt)
    n, stack = 0, list(job.messages or ())
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            n += len(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return n


def _prepare(served: ServedModel, job: Job, n: int) -> tuple:
    """(prompt text, prompt ids, images, a constraint per choice): the request's heavy work."""
    check_job(job)
    text = prompt_text(served, job)
    ids, images = prompt_ids(served, job, text)
    return text, ids, images, [constraint_for(served, job) for _ in range(n)]


def _builds_constraint_vocabulary(served: ServedModel, job: Job) -> bool:
    """The job's constraint (see constraint_for) will be the model's first."""
    return (job.format is not None or bool(job.tools)) and not has_lltokenizer(served.tokenizer)


class Generation:
    """n choices of one job, submitted together; iterate events() in the request's greenlet. Each
    choice's Done goes to the app's metrics, which the app puts in environ["tensorsharp.metrics"];
    a model about to hold more (its first constraint) first makes room through
    environ["tensorsharp.grow"] (the pool's grow)."""

    def __init__(self, served: ServedModel, job: Job, n: int = 1, environ: dict | None = None,
                 group: object | None = None):
        if job.images and not served.supports_images:
            raise ApiError(400, f"model {served.name} does not support images (it has no projector; "
                           f"see --mmproj)", param="messages")
        self.served = served
        self.job = job
        self._metrics = (environ or {}).get("tensorsharp.metrics")
        limit = min(served.n_ctx, job.n_ctx) if job.n_ctx else served.n_ctx
        least = served.tokenizer.fewest_tokens(_client_chars(job))
        if least >= limit:   # refused before any work: tokenizing megabytes takes seconds
            raise ApiError(400, f"the prompt is at least {least} tokens but the context holds {limit} "
                           f"(prompt and reply together)", param="messages", code="context_length_exceeded")
        grow = (environ or {}).get("tensorsharp.grow")
        if grow is not None and _builds_constraint_vocabulary(served, job):
            grow(served, served.facts.constraint_bytes)
        # Rendering, tokenizing and compiling constraints take a worker thread: on the hub they
        # would stall every other request (and /health) for as long as they take.
        text, self.ids, images, constraints = gevent.get_hub().threadpool.apply(_prepare, (served, job, n))
        if not self.ids:
            raise ApiError(400, "the prompt is empty", param="prompt")
        if len(self.ids) >= limit:
            raise ApiError(400, f"the prompt is {len(self.ids)} tokens but the context holds {limit} "
                           f"(prompt and reply together)", param="messages", code="context_length_exceeded")
        room = limit - len(self.ids)
        self.max_tokens = room if job.max_tokens is None else min(job.max_tokens, room)
        self.replies = [new_reply(served, job, text or "") for _ in range(n)]
        requests = []
        if group is None and n > 1:
            group = object()
        for i in range(n):
            sampling = job.sampling
            if n > 1 and sampling.seed is not None:   # n seeded choices should still differ
                sampling = dataclasses.replace(sampling, seed=sampling.seed + i)
            requests.append(GenerationRequest(self.ids, self.max_tokens, sampling, list(job.stop),
                                              session=job.session, reuse_prefix=job.reuse_prefix,
                                              constraint=constraints[i], images=images,
                                              shown=served.shown_tokens[bool(job.tools)], group=group,
                                              stop_at_eog=not job.ignore_eos))
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
        held, self._held = self._held, []
        try:
            for index, event in itertools.chain(held, self._iter):
                reply = self.replies[index]
                if isinstance(event, Token):
                    yield index, Output(event, reply.feed(event.text))
                    continue
                if isinstance(event, Done):
                    if self._metrics is not None:
                        self._metrics.finished(self.served.name, event)
                    tail = reply.finish(cut_off=event.reason == "length")
                    if tail:
                        yield index, Output(None, tail)
                    # Cut off by max_tokens, the partial JSON goes out with finish_reason
                    # "length" as in OpenAI's API, Ollama and llama-server: client libraries
                    # raise their own truncation errors on that, not on an HTTP error.
                    if self.job.format is not None and event.reason != "length":
                        try:
                            validate_output(reply.content, _schema(self.job))
                        except OutputValidationError as e:
                            yield index, Failed(e)   # 422 before the first byte, an error chunk after
                            continue
                yield index, event
        finally:
            self.close()

    def cancel(self) -> None:
        """Ends the generation early from another greenlet; events() still sees it finish."""
        self._events.cancel()

    def close(self) -> None:
        self._events.close()
