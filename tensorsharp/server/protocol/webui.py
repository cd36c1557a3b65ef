"""Web UI dialect (DESIGN.md section 4): the chat page's /api/chat body and its SSE frames."""
from __future__ import annotations

from dataclasses import dataclass

from tensorsharp.engine.sampler import MAX_WINDOW, SamplingParams
from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.common import DEFAULT_MAX_TOKENS, Image, with_images
from tensorsharp.server.protocol.fields import Fields
from tensorsharp.chat.output import ContentDelta, ThinkingDelta
from tensorsharp.server.streaming import FrameTemplate, sse_line

ROLES = {"system", "user", "assistant", "tool"}


@dataclass
class ChatRequest:
    messages: list[dict]          # role, content (+ tool_calls / tool_call_id, images: upload ids, as sent)
    session_id: str | None
    new_chat: bool
    think: bool | None
    tools: list | None
    max_tokens: int
    sampling: SamplingParams
    system_prompt: str | None
    model: str | None = None      # None: the server's default model


def is_webui_chat(body: dict) -> bool:
    """/api/chat serves Ollama clients (their bodies name a model) and the web page (its bodies
    carry a session, and a model only when the reader picked one)."""
    return "model" not in body or "sessionId" in body


def parse_chat(body: dict) -> ChatRequest:
    f = Fields(body)
    messages = []
    for i, m, role in f.messages(ROLES):
        msg = {"role": role, "content": m.str("content", "")}
        if m.has("tool_calls"):
            msg["tool_calls"] = m.tool_calls()
        if m.has("tool_call_id"):
            msg["tool_call_id"] = m.str("tool_call_id")
        ids = m.list("images", [])
        if not all(isinstance(x, str) for x in ids):
            raise ApiError(400, f"'messages[{i}].images' must be an array of upload ids")
        if ids:
            msg["images"] = ids
        messages.append(msg)
    sampling = SamplingParams(temperature=f.float("temperature", 0.0, lo=0, hi=2),
                              top_p=f.float("topP", 1.0, lo=0, hi=1), top_k=min(f.int("topK", 0, lo=0), MAX_WINDOW))
    return ChatRequest(messages, f.str("sessionId"), f.bool("newChat", False), f.bool("think"),
                       f.list("tools") or None, f.int("maxTokens", DEFAULT_MAX_TOKENS, lo=1), sampling,
                       f.str("systemPrompt"), f.str("model"))


def job_messages(turns: list[dict]) -> tuple[list[dict], list[Image]]:
    """Session turns (images: Image objects, kept beside the text) as the messages of a job, each
    message's images in front of its text, and all those images in order."""
    messages, images = [], []
    for t in turns:
        attached = t.get("images", [])
        messages.append({**{k: v for k, v in t.items() if k != "images"},
                         "content": with_images(t.get("content") or "", attached)})
        images += attached
    return messages, images


# A streamed token's frame, encoded once: a token costs a string escape.
_FRAMES = {ContentDelta: FrameTemplate(lambda text: {"token": text}, sse_line),
           ThinkingDelta: FrameTemplate(lambda text: {"thinking": text}, sse_line)}


def delta_frames(deltas: list) -> list[str]:
    return [_FRAMES[type(d)](d.text) for d in deltas if type(d) in _FRAMES]


def done_frame(done, reason: str) -> str:
    eval_s = done.eval_ns / 1e9
    return sse_line({"done": True, "tokenCount": done.completion_tokens, "elapsed": round(done.total_ns / 1e9, 3),
                  "tokPerSec": round(done.completion_tokens / eval_s, 2) if eval_s > 0 else 0.0,
                  "promptTokens": done.prompt_tokens, "kvReusedTokens": done.cached_tokens,
                  "kvReusePercent": round(100 * done.cached_tokens / done.prompt_tokens, 1) if done.prompt_tokens else 0.0,
                  "finishReason": reason})


def models(entries: list, loaded: dict, default: str) -> dict:
    """entries: (spec, facts) of every model served; loaded: the loaded ones' ServedModels by name."""
    out = []
    for spec, facts in entries:
        served = loaded.get(spec.name)
        caps = served.capabilities if served is not None else facts.capabilities
        out.append({"name": spec.name, "file": str(spec.path), "architecture": facts.architecture,
                    "contextLength": served.n_ctx if served is not None else facts.context_length,
                    "parameters": facts.parameter_size, "quantization": facts.quantization,
                    "supportsImages": "vision" in caps, "supportsThinking": "thinking" in caps,
                    "supportsTools": "tools" in caps, "isLoaded": served is not None})
    return {"models": out, "loaded": default}


def queue_status(statuses: list[dict]) -> dict:
    """/api/queue/status from the loaded models' scheduler statuses, summed: TensorSharp's fields,
    which its clients read, beside our own (pending, active, parallel, capacity)."""
    total = {k: sum(s[k] for s in statuses) for k in ("pending", "active", "processed", "parallel", "capacity")}
    return {"busy": total["active"] > 0, "pending_requests": total["pending"], "total_processed": total["processed"],
            **{k: total[k] for k in ("pending", "active", "parallel", "capacity")}}
