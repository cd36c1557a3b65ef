"""What a model's name adds to a request when /api/create made it (a system prompt and Ollama
options): merged into each dialect's request body under what the request gives itself, so the
name behaves alike on the Ollama and the OpenAI routes."""
from __future__ import annotations

import dataclasses

from tensorsharp.server.catalog import Spec
from tensorsharp.server.protocol.common import Job

# Ollama options with a field of the same meaning and name in the OpenAI bodies (top_k, min_p and
# repeat_penalty are the llama.cpp-style extensions those bodies take).
_SAME_NAME = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty",
              "seed")
_SYSTEM_ROLES = ("system", "developer")


def ollama_body(spec: Spec | None, data: dict, chat: bool) -> dict:
    """An /api/generate or /api/chat body with the model's options under the request's own, and
    its system prompt where the request brings none."""
    if spec is None or (not spec.parameters and not spec.system):
        return data
    data = dict(data)
    if spec.parameters:
        options = data.get("options")
        data["options"] = {**spec.parameters, **options} if isinstance(options, dict) else (options or spec.parameters)
    messages = data.get("messages")
    if spec.system and chat and isinstance(messages, list) and messages and not _has_system(messages):
        data["messages"] = [{"role": "system", "content": spec.system}, *messages]
    elif spec.system and not chat and not data.get("system") and not data.get("raw"):
        data["system"] = spec.system
    return data


def openai_body(spec: Spec | None, data: dict, route: str) -> dict:
    """A /v1/chat/completions ("chat"), /v1/completions ("completions") or /v1/responses
    ("responses") body with the model's options as that body names them, and its system prompt
    as the first turn (chat) or the instructions (responses). A completion's prompt is raw text
    that no template renders, so a system prompt has no place there (llama-server's reading of
    /v1/completions, which this server follows)."""
    if spec is None or (not spec.parameters and not spec.system):
        return data
    data = dict(data)
    params = spec.parameters
    for name in _SAME_NAME:
        if name in params and name not in data:
            data[name] = params[name]
    budget = params.get("num_predict")
    lengths = {"chat": ("max_completion_tokens", "max_tokens"), "completions": ("max_tokens",),
               "responses": ("max_output_tokens",)}[route]
    if isinstance(budget, int) and budget > 0 and not any(k in data for k in lengths):
        data[lengths[-1]] = budget
    if route != "responses" and "stop" in params and "stop" not in data:
        data["stop"] = params["stop"]
    if spec.system and route == "chat":
        messages = data.get("messages")
        if isinstance(messages, list) and messages and not _has_system(messages):
            data["messages"] = [{"role": "system", "content": spec.system}, *messages]
    elif spec.system and route == "responses" and not data.get("instructions"):
        items = data.get("input")
        if not (isinstance(items, list) and _has_system(items)):
            data["instructions"] = spec.system
    return data


def openai_job(spec: Spec | None, job: Job) -> Job:
    """The options the OpenAI bodies have no field for, set on the job: Ollama's num_ctx (the
    request's context limit), repeat_last_n, and stop for the Responses API."""
    if spec is None or not spec.parameters:
        return job
    params, changes = spec.parameters, {}
    if isinstance(params.get("num_ctx"), int) and params["num_ctx"] > 0 and job.n_ctx is None:
        changes["n_ctx"] = params["num_ctx"]
    if isinstance(params.get("repeat_last_n"), int) and params["repeat_last_n"] >= -1:
        changes["sampling"] = dataclasses.replace(job.sampling, repeat_last_n=params["repeat_last_n"])
    stop = params.get("stop")
    if stop and not job.stop:
        changes["stop"] = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)]
    return dataclasses.replace(job, **changes) if changes else job


def _has_system(turns: list) -> bool:
    return any(isinstance(m, dict) and m.get("role") in _SYSTEM_ROLES for m in turns)
