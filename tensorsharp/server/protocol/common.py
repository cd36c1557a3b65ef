"""The dialect-neutral job every route builds from its request, and the per-request defaults."""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field

from tensorsharp.engine.sampler import SamplingParams

DEFAULT_MAX_TOKENS = 200          # Ollama num_predict and the web UI's maxTokens when unset
DEFAULT_COMPLETION_TOKENS = 16    # OpenAI /v1/completions max_tokens when unset


# Where an image goes in a message's text until the rendered prompt is split there. Random per
# process, so no text a client sends can pose as one.
IMAGE_MARKER = f"<image-{uuid.uuid4().hex}>"


@dataclass(frozen=True)
class Image:
    """An image a client attached, as sent (checked and decoded later, before queueing)."""
    data: bytes = field(repr=False, compare=False)
    digest: str     # sha256 of data: equal images compare equal, and share cached embeddings

    @classmethod
    def of(cls, data: bytes) -> "Image":
        return cls(data, hashlib.sha256(data).hexdigest())


def with_images(text: str, images: list[Image]) -> str:
    """A message's text with its images in front, where Ollama places a message's images."""
    return IMAGE_MARKER * len(images) + text


@dataclass
class Job:
    """What a route asks of the engine, whatever the dialect."""
    messages: list[dict] | None = None     # chat turns, rendered by the model's template
    prompt: str | list[int] | None = None  # raw text or token ids, used as they are
    max_tokens: int | None = None          # None: until the context is full
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: list[str] = field(default_factory=list)
    tools: list | None = None              # function tools offered to the model
    tool_choice: str | dict | None = None  # None/"auto": the model decides; "required" or a named
                                           # function: a call is forced by constrained decoding
    parallel_tool_calls: bool | None = None  # a reply may hold several calls. None (not asked): an
                                           # auto reply may, a forced one holds one, as a small model
                                           # repeats a forced call until max_tokens (llama-server
                                           # forces one too)
    think: bool | None = None              # None: the template's default
    reasoning_effort: str | None = None    # "low", "medium" or "high" (templates that read it: GPT-OSS)
    format: object = None                  # "json" or a JSON schema the output must follow
    n_ctx: int | None = None               # the client's own context limit (Ollama num_ctx)
    reuse_prefix: bool = True              # False: evaluate the whole prompt (Ollama generate)
    session: str | None = None             # KV slot affinity (web UI session)
    images: list[Image] = field(default_factory=list)  # in IMAGE_MARKER order; text-only models refuse them
    ignore_eos: bool = False               # generate past end-of-generation tokens (llama-server's
                                           # and vLLM's extension; benchmarks want full lengths)
    context: list[int] | None = None       # token ids placed before the rendered prompt: an earlier
                                           # /api/generate's "context" sent back (Ollama)


def token_piece(tokenizer, tid: int) -> tuple[str, list[int]]:
    raw = tokenizer.token_to_piece(tid, special=True)
    return raw.decode("utf-8", "replace"), list(raw)


def token_logprob(tokenizer, token, top_n: int) -> dict:
    """One token's logprob entry, the shape OpenAI's choices[].logprobs.content and Ollama's
    logprobs share: token, logprob, bytes and the top_n alternatives."""
    text, raw = token_piece(tokenizer, token.id)
    top = []
    for tid, lp in (token.top or [])[:top_n]:
        t, b = token_piece(tokenizer, tid)
        top.append({"token": t, "logprob": lp, "bytes": b})
    return {"token": text, "logprob": token.logprob, "bytes": raw, "top_logprobs": top}
