"""Ollama dialect: /api/generate and /api/chat requests, NDJSON chunks, and the model listings."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from tensorsharp.engine.sampler import MAX_WINDOW, SamplingParams
from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.common import DEFAULT_MAX_TOKENS, Image, Job, with_images
from tensorsharp.server.protocol.fields import Fields, base64_bytes
from tensorsharp.chat.output import ContentDelta, ThinkingDelta
from tensorsharp.server.reply import arguments_object

ROLES = {"system", "user", "assistant", "tool"}


@dataclass
class Request:
    model: str
    job: Job
    stream: bool
    empty: bool   # no prompt / messages: Ollama answers with a "load" response


def _options(f: Fields | None) -> tuple[SamplingParams, int | None, int | None, list[str]]:
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
        seed=None if seed < 0 else seed)
    return sampling, (None if num_predict < 0 else num_predict), f.int("num_ctx", lo=1), f.strings("stop")


def _format(f: Fields):
    value = f.raw("format")
    if value in (None, ""):
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise ApiError(400, "'format' must be \"json\" or a JSON schema object", param="format")


def _think(f: Fields) -> bool | None:
    value = f.raw("think")
    if value is None or isinstance(value, bool):
        return value
    if value in ("high", "medium", "low"):
        return True
    raise ApiError(400, "'think' must be true, false, \"high\", \"medium\" or \"low\"", param="think")


def _images(f: Fields, key: str = "images") -> list[Image]:
    images = f.list(key, [])
    if not all(isinstance(i, str) for i in images):
        raise ApiError(400, f"'{f.name(key)}' must be an array of base64 strings", param=f.name(key))
    return [Image.of(base64_bytes(b64, f"{f.name(key)}[{i}]")) for i, b64 in enumerate(images)]


def _job(f: Fields, **kw) -> Job:
    sampling, max_tokens, num_ctx, stop = _options(f.fields("options"))
    f.raw("keep_alive")   # the one model stays loaded; accepted for compatibility
    return Job(max_tokens=max_tokens, sampling=sampling, stop=stop, n_ctx=num_ctx, think=_think(f),
               format=_format(f), **kw)


def parse_generate(body: dict) -> Request:
    f = Fields(body)
    model = f.str("model", required=True)
    prompt = f.str("prompt", "")
    system = f.str("system")
    raw = f.bool("raw", False)
    images = _images(f)
    if raw:
        job = _job(f, prompt=with_images(prompt, images), images=images, reuse_prefix=False)
    else:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": with_images(prompt, images)}]
        job = _job(f, messages=messages, images=images, reuse_prefix=False)
    return Request(model, job, f.bool("stream", True), empty=not prompt and not images)


def parse_chat(body: dict) -> Request:
    f = Fields(body)
    model = f.str("model", required=True)
    messages, images = [], []
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
                   empty=False)


# -- responses -----------------------------------------------------------------------------------

def timestamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


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


def generate_chunk(model: str, deltas: list) -> dict:
    out = {"model": model, "created_at": timestamp(), "response": "", "done": False}
    for d in deltas:
        if isinstance(d, ContentDelta):
            out["response"] += d.text
        elif isinstance(d, ThinkingDelta):
            out["thinking"] = out.get("thinking", "") + d.text
    return out


def generate_final(model: str, text: str, thinking: str, done, reason: str) -> dict:
    out = {"model": model, "created_at": timestamp(), "response": text, "done": True, **metrics(done, reason)}
    if thinking:
        out["thinking"] = thinking
    return out


def chat_message(content: str, thinking: str = "", calls: list[dict] | None = None) -> dict:
    msg = {"role": "assistant", "content": content}
    if thinking:
        msg["thinking"] = thinking
    if calls:
        msg["tool_calls"] = tool_calls(calls)
    return msg


def chat_chunk(model: str, deltas: list) -> dict | None:
    content = "".join(d.text for d in deltas if isinstance(d, ContentDelta))
    thinking = "".join(d.text for d in deltas if isinstance(d, ThinkingDelta))
    if not content and not thinking:
        return None   # tool-call pieces: Ollama sends whole calls, in the final chunk
    return {"model": model, "created_at": timestamp(), "message": chat_message(content, thinking), "done": False}


def chat_final(model: str, message: dict, done, reason: str) -> dict:
    return {"model": model, "created_at": timestamp(), "message": message, "done": True, **metrics(done, reason)}


def load_response(model: str, chat: bool) -> dict:
    out = {"model": model, "created_at": timestamp(), "done": True, "done_reason": "load"}
    if chat:
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    return out


def details(served) -> dict:
    return {"parent_model": "", "format": "gguf", "family": served.architecture,
            "families": [served.architecture], "parameter_size": served.parameter_size,
            "quantization_level": served.quantization}


def _entry(served) -> dict:
    digest = served.registry.sha256 if served.registry is not None else ""
    return {"name": served.name, "model": served.name, "size": served.file_size, "digest": digest,
            "details": details(served)}


def tags(served) -> dict:
    return {"models": [{**_entry(served), "modified_at": served.modified_at.isoformat()}]}


def ps(served) -> dict:
    # Loaded for the server's lifetime: "expires" far ahead, as Ollama shows keep_alive=-1.
    expires = (datetime.now(timezone.utc) + timedelta(days=365 * 100)).isoformat()
    return {"models": [{**_entry(served), "expires_at": expires, "size_vram": 0, "context_length": served.n_ctx}]}


def show(served) -> dict:
    info = {k: v for k, v in served.metadata.items() if isinstance(v, (str, int, float, bool))}
    info["general.parameter_count"] = served.parameter_count
    params = [f"num_ctx {served.n_ctx}", f"num_predict {DEFAULT_MAX_TOKENS}", "temperature 0"]
    for tid in sorted(served.tokenizer.eog_ids):
        params.append(f'stop "{served.tokenizer.token_text(tid)}"')
    return {"license": str(served.metadata.get("general.license", "")),
            "modelfile": f"# served by tensorsharp\nFROM {served.path}\n",
            "parameters": "\n".join(params), "template": served.template.source if served.template else "",
            "details": details(served), "model_info": info, "capabilities": served.capabilities,
            "modified_at": served.modified_at.isoformat()}
