"""Ollama dialect: /api/generate and /api/chat requests, NDJSON chunks, and the model listings."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from tensorsharp.engine.sampler import MAX_WINDOW, SamplingParams
from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol import duration
from tensorsharp.server.protocol.common import DEFAULT_MAX_TOKENS, Image, Job, with_images
from tensorsharp.server.protocol.fields import Fields, base64_bytes
from tensorsharp.chat.output import ContentDelta, ThinkingDelta
from tensorsharp.server.reply import arguments_object

ROLES = {"system", "user", "assistant", "tool"}


MAX_TOP_LOGPROBS = 20


@dataclass
class Request:
    model: str
    job: Job
    stream: bool
    empty: bool   # no prompt / messages: Ollama loads (or with keep_alive 0 unloads) and says so
    keep_alive: float | None = None   # seconds the model stays loaded after this request; None: the default
    logprobs: bool = False
    top_logprobs: int = 0


def _options(f: Fields | None, n_probs: int) -> tuple[SamplingParams, int | None, int | None, list[str]]:
    """(sampling, max_tokens or None for "until the context is full", num_ctx, stop)."""
    f = f if f is not None else Fields({}, "options")
    num_predict = f.int("num_predict", DEFAULT_MAX_TOKENS, lo=-2)
    seed = f.int("seed", -1)
    sampling = SamplingParams(
        temperature=f.float("temperature", 0.0, lo=0),
        top_k=min(f.int("top_k", 0, lo=0), MAX_WINDOW),
        top_p=f.float("top_p", 1.0, lo=0, hi=1),
        min_p=f.float("min_p", 0.0, lo=0, hi=1),
        repeat_penalty=f.float("repeat_penalty", 1.0, lo=0.01),
        repeat_last_n=min(f.int("repeat_last_n", 64, lo=-1), MAX_WINDOW),
        presence_penalty=f.float("presence_penalty", 0.0),
        frequency_penalty=f.float("frequency_penalty", 0.0),
        seed=None if seed < 0 else seed, n_probs=n_probs)
    return sampling, (None if num_predict < 0 else num_predict), f.int("num_ctx", lo=1), f.strings("stop")


def _format(f: Fields):
    value = f.raw("format")
    if value in (None, ""):
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise ApiError(400, "'format' must be \"json\" or a JSON schema object", param="format")


EFFORTS = ("high", "medium", "low")
THINK_LEVELS = (*EFFORTS, "max")   # what Ollama takes; "max" asks for the highest effort


def _think(f: Fields) -> tuple[bool | None, str | None]:
    """think as a switch, and the reasoning effort it names (Ollama's levels for GPT-OSS)."""
    value = f.raw("think")
    if value is None or isinstance(value, bool):
        return value, None
    if value in THINK_LEVELS:
        return True, EFFORTS[0] if value == "max" else value
    raise ApiError(400, f'invalid think value: {json.dumps(value)} (must be "high", "medium", "low", "max", true, '
                   'or false)', param="think")


def _images(f: Fields, key: str = "images") -> list[Image]:
    images = f.list(key, [])
    if not all(isinstance(i, str) for i in images):
        raise ApiError(400, f"'{f.name(key)}' must be an array of base64 strings", param=f.name(key))
    return [Image.of(base64_bytes(b64, f"{f.name(key)}[{i}]")) for i, b64 in enumerate(images)]


def _logprobs(f: Fields) -> tuple[bool, int]:
    """(logprobs, top_logprobs): alternatives are reported only beside the chosen token's logprob."""
    return f.bool("logprobs", False), f.int("top_logprobs", 0, lo=0, hi=MAX_TOP_LOGPROBS)


def _job(f: Fields, **kw) -> Job:
    logprobs, top = _logprobs(f)
    sampling, max_tokens, num_ctx, stop = _options(f.fields("options"), max(top, 1) if logprobs else 0)
    think, effort = _think(f)
    return Job(max_tokens=max_tokens, sampling=sampling, stop=stop, n_ctx=num_ctx, think=think,
               reasoning_effort=effort, format=_format(f), **kw)


def keep_alive(f: Fields) -> float | None:
    value = f.raw("keep_alive")
    if value is None:
        return None
    try:
        return duration.seconds(value)
    except ValueError as e:
        raise ApiError(400, f"'keep_alive': {e}", param="keep_alive") from None


def _context(f: Fields) -> list[int] | None:
    ids = f.list("context")
    if ids is not None and not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise ApiError(400, "'context' must be an array of token ids", param="context")
    return ids or None


def parse_generate(body: dict) -> Request:
    f = Fields(body)
    model = f.str("model", required=True)
    prompt = f.str("prompt", "")
    system = f.str("system")
    template = f.str("template")   # a custom template is not applied: the model's own renders
    context = _context(f)
    raw = f.bool("raw", False)
    images = _images(f)
    if raw:
        if system or template or context:
            raise ApiError(400, "raw mode does not support template, system, or context", param="raw")
        job = _job(f, prompt=with_images(prompt, images), images=images, reuse_prefix=False)
    else:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": with_images(prompt, images)}]
        job = _job(f, messages=messages, images=images, reuse_prefix=False, context=context)
    return Request(model, job, f.bool("stream", True), not prompt and not images, keep_alive(f), *_logprobs(f))


def parse_chat(body: dict) -> Request:
    f = Fields(body)
    model = f.str("model", required=True)
    messages, images = [], []
    if f.list("messages", []) == []:   # Ollama's way to load or unload a model
        return Request(model, _job(f, messages=[]), f.bool("stream", True), True, keep_alive(f))
    for _, m, role in f.messages(ROLES):
        attached = _images(m)
        msg = {"role": role, "content": with_images(m.str("content", ""), attached)}
        images += attached
        calls = m.tool_calls()
        if calls:
            msg["tool_calls"] = calls
        if m.has("tool_name"):
            msg["name"] = m.str("tool_name")
        messages.append(msg)
    tools = f.list("tools") or None
    return Request(model, _job(f, messages=messages, tools=tools, images=images), f.bool("stream", True),
                   False, keep_alive(f), *_logprobs(f))


# -- responses -----------------------------------------------------------------------------------

_second: tuple = (None, "")   # the last second a timestamp fell in, and its formatted date and time


def timestamp() -> str:
    """Now, as Ollama's created_at (2024-05-01T12:00:00.123456Z). Every streamed line carries one,
    so the date and time are formatted once a second and only the microseconds per call."""
    global _second
    ns = time.time_ns()
    sec, us = ns // 1_000_000_000, ns // 1000 % 1_000_000
    second = _second   # one tuple read: hub and worker threads may both stamp
    if sec != second[0]:
        second = _second = sec, datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{second[1]}.{us:06d}Z"


def metrics(done, reason: str) -> dict:
    """The final chunk's fields: why it ended, durations in ns, counts and the KV cache hit."""
    return {"done_reason": reason, "total_duration": done.total_ns, "load_duration": done.queue_ns,
            "prompt_eval_count": done.prompt_tokens, "prompt_eval_duration": done.prompt_ns,
            "eval_count": done.completion_tokens, "eval_duration": done.eval_ns,
            "prompt_cache_hit_tokens": done.cached_tokens,
            "prompt_cache_hit_ratio": round(done.cached_tokens / done.prompt_tokens, 4) if done.prompt_tokens else 0.0}


def tool_calls(calls: list[dict]) -> list[dict]:
    """OpenAI-shaped calls as Ollama sends them: arguments as an object."""
    return [{"function": {"name": c["function"]["name"], "arguments": arguments_object(c["function"]["arguments"])}}
            for c in calls]


def _with_logprobs(out: dict, logprobs: list | None) -> dict:
    if logprobs is not None:
        out["logprobs"] = logprobs
    return out


def generate_chunk(model: str, deltas: list, logprobs: list | None = None, at: str | None = None) -> dict:
    """A done:false line; at: its created_at (now by default)."""
    out = {"model": model, "created_at": at or timestamp(), "response": "", "done": False}
    for d in deltas:
        if isinstance(d, ContentDelta):
            out["response"] += d.text
        elif isinstance(d, ThinkingDelta):
            out["thinking"] = out.get("thinking", "") + d.text
    return _with_logprobs(out, logprobs)


def generate_final(model: str, text: str, thinking: str, done, reason: str, context: list[int] | None = None,
                   logprobs: list | None = None) -> dict:
    """The last line (or the whole answer): context is the conversation's token ids, prompt and
    reply, which a client may send back to continue from there."""
    out = {"model": model, "created_at": timestamp(), "response": text, "done": True, **metrics(done, reason)}
    if thinking:
        out["thinking"] = thinking
    if context is not None:
        out["context"] = context
    return _with_logprobs(out, logprobs)


def chat_message(content: str, thinking: str = "", calls: list[dict] | None = None) -> dict:
    msg = {"role": "assistant", "content": content}
    if thinking:
        msg["thinking"] = thinking
    if calls:
        msg["tool_calls"] = tool_calls(calls)
    return msg


def chat_chunk(model: str, deltas: list, logprobs: list | None = None, calls: list[dict] | None = None,
               at: str | None = None) -> dict:
    """A done:false line (at: its created_at, now by default); Ollama sends tool calls whole, on
    a line of their own before the last."""
    content = "".join(d.text for d in deltas if isinstance(d, ContentDelta))
    thinking = "".join(d.text for d in deltas if isinstance(d, ThinkingDelta))
    return _with_logprobs({"model": model, "created_at": at or timestamp(),
                           "message": chat_message(content, thinking, calls), "done": False}, logprobs)


def chat_final(model: str, message: dict, done, reason: str, logprobs: list | None = None) -> dict:
    return _with_logprobs({"model": model, "created_at": timestamp(), "message": message, "done": True,
                           **metrics(done, reason)}, logprobs)


def load_response(model: str, chat: bool, unload: bool = False) -> dict:
    out = {"model": model, "created_at": timestamp(), "done": True, "done_reason": "unload" if unload else "load"}
    if chat:
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    return out


def details(facts) -> dict:
    return {"parent_model": "", "format": "gguf", "family": facts.architecture,
            "families": [facts.architecture] if facts.architecture else [],
            "parameter_size": facts.parameter_size, "quantization_level": facts.quantization}


def _entry(spec, facts) -> dict:
    return {"name": spec.name, "model": spec.name, "size": spec.file_size,
            "digest": spec.digest or _digest(spec), "details": details(facts)}


def _digest(spec) -> str:
    """A digest for a file the registry does not know: of its path, size and mtime (hashing
    gigabytes for a listing would take seconds; clients only compare digests)."""
    st = spec.path.stat()
    return hashlib.sha256(f"{spec.path}:{spec.name}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()


def tags(models: list) -> dict:
    """models: (spec, facts) of every model served."""
    return {"models": [{**_entry(spec, facts), "modified_at": spec.modified_at.isoformat()} for spec, facts in models]}


def ps(loaded: list) -> dict:
    """loaded: the pool's Loaded entries."""
    return {"models": [{**_entry(e.served.spec, e.served.facts), "size": e.size,
                        "expires_at": e.expiry().isoformat(), "size_vram": 0, "context_length": e.served.n_ctx}
                       for e in loaded]}


def show(model) -> dict:
    """model: a ServedModel, or a catalog Header of one not loaded (they share these fields)."""
    spec = model.spec
    info = {k: v for k, v in model.metadata.items() if isinstance(v, (str, int, float, bool))}
    info["general.parameter_count"] = model.facts.parameter_count
    params = {"num_ctx": model.n_ctx, "num_predict": DEFAULT_MAX_TOKENS, "temperature": 0, **spec.parameters}
    lines = [f"{k} {json.dumps(v)}" for k, v in params.items() if not isinstance(v, list)]
    stops = params.get("stop") if isinstance(params.get("stop"), list) else [
        model.tokenizer.token_text(tid) for tid in sorted(model.tokenizer.eog_ids)]
    lines += [f"stop {json.dumps(text)}" for text in stops]
    modelfile = f"# served by tensorsharp\nFROM {model.path}\n"
    if spec.system:
        modelfile += f'SYSTEM """{spec.system}"""\n'
    modelfile += "".join(f"PARAMETER {line}\n" for line in lines)
    out = {"license": str(model.metadata.get("general.license", "")), "modelfile": modelfile,
           "parameters": "\n".join(lines), "template": model.template.source if model.template else "",
           "details": details(model.facts), "model_info": info, "capabilities": list(model.facts.capabilities),
           "modified_at": spec.modified_at.isoformat()}
    if spec.system:
        out["system"] = spec.system
    return out
