"""OpenAI dialect: /v1/chat/completions and /v1/completions requests, and the response shapes."""
from __future__ import annotations

import functools
import hashlib
import time
import uuid
from dataclasses import dataclass
from importlib import metadata

from tensorsharp.engine.sampler import MAX_WINDOW, SamplingParams
from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.common import (DEFAULT_COMPLETION_TOKENS, IMAGE_MARKER, Image, Job, token_piece,
                                                token_logprob)
from tensorsharp.server.protocol.fields import Fields, base64_bytes
from tensorsharp.chat.families import THINKING_VARIABLES
from tensorsharp.chat.output import ContentDelta, ThinkingDelta

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
MAX_COMPLETION_CHOICES = 64   # prompts x n of one /v1/completions request
IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/webp", "image/gif")


@dataclass
class ChatRequest:
    model: str
    job: Job
    stream: bool
    include_usage: bool
    n: int
    logprobs: bool
    top_logprobs: int


@dataclass
class CompletionRequest:
    model: str
    prompts: list          # each a string or a list of token ids: one choice (times n) per prompt
    job: Job               # prompt filled in per prompt
    stream: bool
    include_usage: bool
    n: int
    logprobs: int | None   # legacy: how many alternatives per token; 0 = just the chosen one
    echo: bool


def _seed(value: int | None) -> int | None:
    """A negative seed asks for a random one (llama-server's -1)."""
    return None if value is None or value < 0 else value


def sampling_params(f: Fields, n_probs: int) -> SamplingParams:
    bias = f.fields("logit_bias")
    logit_bias = {}
    if bias is not None:
        for key in bias.obj:
            try:
                tok = int(key)
            except ValueError:
                raise ApiError(400, f"'logit_bias' keys must be token ids, got {key!r}", param="logit_bias") from None
            logit_bias[tok] = bias.float(key, lo=-100, hi=100)
    return SamplingParams(
        temperature=f.float("temperature", 0.0, lo=0, hi=2),
        top_p=f.float("top_p", 1.0, lo=0, hi=1),
        top_k=min(f.int("top_k", 0, lo=0), MAX_WINDOW),     # llama.cpp-style extensions
        min_p=f.float("min_p", 0.0, lo=0, hi=1),
        repeat_penalty=f.float("repeat_penalty", 1.0, lo=0.01),
        presence_penalty=f.float("presence_penalty", 0.0, lo=-2, hi=2),
        frequency_penalty=f.float("frequency_penalty", 0.0, lo=-2, hi=2),
        seed=_seed(f.int("seed")),
        logit_bias=logit_bias,
        n_probs=n_probs)


def image_from_url(url: str, name: str) -> Image:
    """An image_url's image: only inline data URIs (data:image/png;base64,...); nothing is fetched."""
    scheme, _, rest = url.partition(":")
    if scheme.lower() in ("http", "https"):
        raise ApiError(400, f"'{name}': remote image URLs are not fetched; send the image inline as a "
                       "data URI (data:image/png;base64,...)", param=name, code="invalid_image_url")
    head, comma, data = rest.partition(",")
    media, _, encoding = head.partition(";")
    if scheme.lower() != "data" or not comma or encoding.lower() != "base64":
        raise ApiError(400, f"'{name}' must be a base64 data URI (data:image/png;base64,...)", param=name,
                       code="invalid_image_url")
    if media.lower() not in IMAGE_TYPES:
        raise ApiError(400, f"'{name}': media type {media or '(none)'!r} is not one of {', '.join(IMAGE_TYPES)}",
                       param=name, code="invalid_image_url")
    return Image.of(base64_bytes(data, name))


def _content(f: Fields, i: int) -> tuple[str, list[Image]]:
    """A message's text, each image in it standing as IMAGE_MARKER, and those images (content:
    string, null or an array of parts)."""
    value = f.raw("content")
    if value is None or isinstance(value, str):
        return value or "", []
    if not isinstance(value, list):
        raise ApiError(400, f"'messages[{i}].content' must be a string or an array of parts", param=f"messages[{i}].content")
    texts, images = [], []
    for j, raw in enumerate(value):
        part = Fields(raw, f"messages[{i}].content[{j}]")
        kind = part.str("type", required=True)
        if kind == "text":
            texts.append(part.str("text", required=True))
        elif kind == "image_url":
            url = part.raw("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str) or not url:
                raise ApiError(400, f"'{part.name('image_url')}' must hold a url", param=part.name("image_url"))
            images.append(image_from_url(url, part.name("image_url")))
            texts.append(IMAGE_MARKER)
        else:
            raise ApiError(400, f"content part type {kind!r} is not supported", param=part.name("type"))
    return "".join(texts), images


def parse_messages(f: Fields) -> tuple[list[dict], list[Image]]:
    out, images = [], []
    for i, m, role in f.messages(ROLES):
        text, attached = _content(m, i)
        images += attached
        msg = {"role": {"developer": "system", "function": "tool"}.get(role, role), "content": text}
        calls = m.tool_calls()
        if calls:
            msg["tool_calls"] = calls
        for key in ("tool_call_id", "name"):
            if m.has(key):
                msg[key] = m.str(key)
        out.append(msg)
    return out, images


def _tools(f: Fields) -> tuple[list | None, str | dict | None]:
    """The tools offered and the tool_choice that forces a call ("required" or a named function)."""
    tools = f.list("tools") or []
    names = []
    for i, raw in enumerate(tools):
        t = Fields(raw, f"tools[{i}]")
        fn = t.fields("function")
        if t.str("type", "function") != "function" or fn is None:
            raise ApiError(400, f"'tools[{i}]' must be a function tool", param=f"tools[{i}]")
        names.append(fn.str("name", required=True))
    choice = f.raw("tool_choice")
    if choice is None or choice == "auto":
        return tools or None, None
    if choice == "none":
        return None, None
    if choice == "required":
        if not tools:
            raise ApiError(400, "'tool_choice' is \"required\" but no tools are given", param="tool_choice")
        return tools, "required"
    if isinstance(choice, dict):
        c = Fields(choice, "tool_choice")
        fn = c.fields("function")
        name = fn.str("name", required=True) if fn is not None else None
        if c.str("type", "function") == "function" and name is not None:
            if name not in names:
                raise ApiError(400, f"'tool_choice' names {name!r}, which is not one of the tools",
                               param="tool_choice")
            return tools, {"type": "function", "function": {"name": name}}
    raise ApiError(400, "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                   "{\"type\": \"function\", \"function\": {\"name\": ...}}", param="tool_choice")


def _format(f: Fields):
    rf = f.fields("response_format")
    if rf is None:
        return None
    kind = rf.str("type", required=True)
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = rf.fields("json_schema")
        if spec is None or not isinstance(spec.raw("schema", {}), dict):
            raise ApiError(400, "'response_format.json_schema.schema' must be an object",
                           param="response_format.json_schema")
        return spec.raw("schema", {})
    raise ApiError(400, f"'response_format.type' must be text, json_object or json_schema, got {kind!r}",
                   param="response_format.type")


def _common(f: Fields) -> tuple[str, bool, bool, int, list[str], int | None]:
    model = f.str("model", required=True)
    stream = f.bool("stream", False)
    opts = f.fields("stream_options")
    include_usage = bool(stream and opts is not None and opts.bool("include_usage", False))
    n = f.int("n", 1, lo=1, hi=16)
    max_tokens = f.int("max_completion_tokens", lo=1)
    if max_tokens is None:
        max_tokens = f.int("max_tokens", lo=1)
    else:
        f.int("max_tokens", lo=1)
    return model, stream, include_usage, n, f.strings("stop"), max_tokens


def parse_chat(body: dict) -> ChatRequest:
    f = Fields(body)
    model, stream, include_usage, n, stop, max_tokens = _common(f)
    messages, images = parse_messages(f)
    logprobs = f.bool("logprobs", False)
    top = f.int("top_logprobs", 0, lo=0, hi=20)
    if top and not logprobs:
        raise ApiError(400, "'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    think = f.bool("think")   # the Ollama-style switch, which the API documents also accept here
    # vLLM's and llama-server's way: template variables, of which the thinking switches are honoured.
    variables = f.fields("chat_template_kwargs")
    for name in THINKING_VARIABLES:
        if variables is not None and variables.has(name):
            think = variables.bool(name)
    effort = f.str("reasoning_effort")
    if effort is not None:
        think = effort != "none"
        if effort not in ("none", "minimal", "low", "medium", "high"):
            raise ApiError(400, "'reasoning_effort' must be \"none\", \"minimal\", \"low\", \"medium\" or \"high\"",
                           param="reasoning_effort")
    tools, tool_choice = _tools(f)
    job = Job(messages=messages, max_tokens=max_tokens, sampling=sampling_params(f, max(top, 1) if logprobs else 0),
              stop=stop, tools=tools, tool_choice=tool_choice, parallel_tool_calls=f.bool("parallel_tool_calls"),
              think=think, reasoning_effort=effort if effort in ("low", "medium", "high") else None,
              format=_format(f), images=images, ignore_eos=f.bool("ignore_eos", False))
    return ChatRequest(model, job, stream, include_usage, n, logprobs, top)


def parse_completion(body: dict) -> CompletionRequest:
    f = Fields(body)
    model, stream, include_usage, n, stop, max_tokens = _common(f)
    prompt = f.raw("prompt")
    if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and all(
            isinstance(t, int) and not isinstance(t, bool) for t in prompt)):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(
            isinstance(p, str) or (isinstance(p, list) and all(isinstance(t, int) for t in p)) for p in prompt):
        prompts = list(prompt)
    else:
        raise ApiError(400, "'prompt' must be a string, an array of strings or an array of token ids", param="prompt")
    if len(prompts) * n > MAX_COMPLETION_CHOICES:
        raise ApiError(400, f"{len(prompts)} prompts x n={n} asks for more than {MAX_COMPLETION_CHOICES} completions "
                       "in one request", param="prompt")
    logprobs = f.int("logprobs", lo=0, hi=5)
    job = Job(max_tokens=DEFAULT_COMPLETION_TOKENS if max_tokens is None else max_tokens,
              sampling=sampling_params(f, max(logprobs, 1) if logprobs is not None else 0), stop=stop,
              ignore_eos=f.bool("ignore_eos", False))
    return CompletionRequest(model, prompts, job, stream, include_usage, n, logprobs, f.bool("echo", False))


# -- responses -----------------------------------------------------------------------------------

def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt: int, completion: int, cached: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


@functools.cache
def server_version() -> str:
    try:
        return metadata.version("tensorsharp")
    except metadata.PackageNotFoundError:
        return "unknown"


def fingerprint(served) -> str:
    """system_fingerprint: names what produced the reply (server version, model file, context), as
    OpenAI's names its backend configuration; a string, as the API sends, never null."""
    key = f"{server_version()}:{served.path.name}:{served.file_size}:{served.n_ctx}"
    return "fp_" + hashlib.sha256(key.encode()).hexdigest()[:10]


def logprobs_field(content: list | None) -> dict | None:
    """choices[].logprobs: the spec requires "refusal" beside "content" (null: no refusals here)."""
    return {"content": content, "refusal": None} if content is not None else None


def message(reply) -> dict:
    # "refusal" is required (null) in the spec's response message.
    msg = {"role": "assistant", "content": reply.content if reply.content or not reply.tool_calls else None,
           "refusal": None}
    if reply.thinking:
        msg["reasoning_content"] = msg["reasoning"] = reply.thinking
    if reply.tool_calls:
        msg["tool_calls"] = reply.tool_calls
    return msg


def chat_completion(cid: str, model: str, created: int, fp: str, choices: list[dict], use: dict) -> dict:
    return {"id": cid, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": fp, "choices": choices, "usage": use}


def chat_choice(index: int, reply, finish_reason: str, logprobs: list | None) -> dict:
    return {"index": index, "message": message(reply), "logprobs": logprobs_field(logprobs),
            "finish_reason": finish_reason}


def delta(d) -> dict:
    """A reply delta (reply.ContentDelta / ThinkingDelta / ToolCallDelta) as a chunk's delta."""
    if isinstance(d, ContentDelta):
        return {"content": d.text}
    if isinstance(d, ThinkingDelta):
        return {"reasoning_content": d.text, "reasoning": d.text}   # both names clients read
    call = {"index": d.index, "function": {"arguments": d.arguments}}
    if d.id is not None:
        call.update(id=d.id, type="function")
        call["function"]["name"] = d.name
    return {"tool_calls": [call]}


def chunk(cid: str, model: str, created: int, fp: str, index: int, delta_: dict, finish_reason=None,
          logprobs: list | None = None, with_usage: bool = False) -> dict:
    out = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
           "system_fingerprint": fp,
           "choices": [{"index": index, "delta": delta_, "logprobs": logprobs_field(logprobs),
                        "finish_reason": finish_reason}]}
    if with_usage:
        out["usage"] = None
    return out


def usage_chunk(cid: str, model: str, created: int, fp: str, use: dict, obj: str = "chat.completion.chunk") -> dict:
    return {"id": cid, "object": obj, "created": created, "model": model, "system_fingerprint": fp,
            "choices": [], "usage": use}


def text_logprobs(tokenizer, tokens: list, top_n: int, offset: int) -> dict:
    """Legacy completions logprobs: tokens, token_logprobs, top_logprobs, text_offset."""
    out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for t in tokens:
        text, _ = token_piece(tokenizer, t.id)
        out["tokens"].append(text)
        out["token_logprobs"].append(t.logprob)
        out["top_logprobs"].append({token_piece(tokenizer, tid)[0]: lp for tid, lp in (t.top or [])[:top_n]})
        out["text_offset"].append(offset)
        offset += len(text)
    return out


def text_completion(cid: str, model: str, created: int, fp: str, choices: list[dict], use: dict | None,
                    obj: str = "text_completion") -> dict:
    out = {"id": cid, "object": obj, "created": created, "model": model, "system_fingerprint": fp,
           "choices": choices}
    if use is not None:
        out["usage"] = use
    return out


def text_choice(index: int, text: str, finish_reason, logprobs: dict | None) -> dict:
    # finish_reason is null on stream chunks before the last, as the real API sends, though the
    # spec's enum for it has no null.
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def model_entry(spec, facts) -> dict:
    # "capabilities" is not OpenAI's: it tells clients (as Ollama's /api/show does) whether the
    # model takes images ("vision").
    return {"id": spec.name, "object": "model", "created": int(spec.modified_at.timestamp()),
            "owned_by": "tensorsharp", "capabilities": list(facts.capabilities)}


def models(entries: list) -> dict:
    """entries: (spec, facts) of every model served."""
    return {"object": "list", "data": [model_entry(spec, facts) for spec, facts in entries]}
