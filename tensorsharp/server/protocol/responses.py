"""OpenAI Responses dialect (/v1/responses): the request read into input items and a Job, the
items as chat turns, and the response object with its output items and usage."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.common import IMAGE_MARKER, Image, Job
from tensorsharp.server.protocol.fields import Fields
from tensorsharp.server.protocol.openai import image_from_url, sampling_params

MESSAGE_ROLES = ("user", "system", "developer", "assistant")
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
SUMMARIES = ("auto", "concise", "detailed")
LOGPROBS = "message.output_text.logprobs"   # the `include` entry asking for them
ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


def new_id(prefix: str) -> str:
    """An id in the API's form: resp_..., msg_..., fc_..., rs_..."""
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass
class ResponsesRequest:
    model: str
    items: list[dict]               # the input as items with ids, as GET .../input_items lists them
    messages: list[dict]            # those items as chat turns (instructions and history not included)
    images: list[Image]             # in IMAGE_MARKER order within messages
    job: Job                        # messages, images and session are the route's to fill in
    instructions: str | None
    previous_response_id: str | None
    stream: bool
    store: bool
    summary: bool                   # reasoning.summary asked for: reasoning is also given as the summary
    logprobs: bool                  # include holds "message.output_text.logprobs"
    top_logprobs: int               # alternatives given beside each token's logprob
    settings: dict = field(default_factory=dict)   # what the response object repeats of the request


# -- input -----------------------------------------------------------------------------------------

def _text_part(part: Fields, role: str) -> tuple[dict, str, Image | None]:
    """One content part: (the part as listed, its text in the prompt, its image)."""
    kind = part.str("type", required=True)
    if kind in ("input_text", "output_text"):
        text = part.str("text", required=True)
        return {"type": kind, "text": text, **({"annotations": []} if kind == "output_text" else {})}, text, None
    if kind == "refusal":
        text = part.str("refusal", required=True)
        return {"type": "refusal", "refusal": text}, text, None
    if kind == "input_image":
        if part.has("file_id"):
            raise ApiError(400, f"'{part.name('file_id')}': files are not stored here; send the image inline "
                           "as image_url (a data URI)", param=part.name("file_id"))
        url = part.str("image_url", required=True)
        listed = {"type": "input_image", "image_url": url, "detail": part.str("detail", "auto")}
        return listed, IMAGE_MARKER, image_from_url(url, part.name("image_url"))
    raise ApiError(400, f"content part type {kind!r} is not supported in a {role} message", param=part.name("type"))


def _message(item: Fields) -> tuple[dict, str, list[Image]]:
    role = item.str("role", required=True)
    if role not in MESSAGE_ROLES:
        raise ApiError(400, f"'{item.name('role')}' must be one of {', '.join(MESSAGE_ROLES)}, got {role!r}",
                       param=item.name("role"))
    content = item.raw("content")
    if isinstance(content, str):
        kind = "output_text" if role == "assistant" else "input_text"
        parts = [{"type": kind, "text": content, **({"annotations": []} if role == "assistant" else {})}]
        return {"type": "message", "role": role, "content": parts}, content, []
    if not isinstance(content, list):
        raise ApiError(400, f"'{item.name('content')}' must be a string or an array of content parts",
                       param=item.name("content"))
    parts, texts, images = [], [], []
    for j, raw in enumerate(content):
        listed, text, image = _text_part(Fields(raw, item.name(f"content[{j}]")), role)
        parts.append(listed)
        texts.append(text)
        images += [image] if image is not None else []
    return {"type": "message", "role": role, "content": parts}, "".join(texts), images


def _output_text(item: Fields) -> str:
    """A function_call_output's output: a string, or input_text parts."""
    out = item.raw("output")
    if isinstance(out, str):
        return out
    if isinstance(out, list):
        return "".join(Fields(p, item.name(f"output[{j}]")).str("text", required=True) for j, p in enumerate(out))
    raise ApiError(400, f"'{item.name('output')}' must be a string or an array of input_text parts",
                   param=item.name("output"))


def _reasoning_text(item: Fields) -> str:
    texts = []
    for key in ("content", "summary"):
        for j, raw in enumerate(item.list(key) or ()):
            texts.append(Fields(raw, item.name(f"{key}[{j}]")).str("text", required=True))
        if texts:   # the full reasoning when given; else its summary
            break
    return "\n".join(texts)


def read_input(f: Fields) -> tuple[list[dict], list[dict], list[Image]]:
    """`input` (a string or a list of items) as (listed items, chat turns, images)."""
    value = f.raw("input")
    if isinstance(value, str):
        value = [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise ApiError(400, "'input' must be a string or a non-empty array of input items", param="input")
    items, turns, images = [], [], []
    reasoning = ""          # a reasoning item belongs to the assistant turn that follows it
    for i, raw in enumerate(value):
        item = Fields(raw, f"input[{i}]")
        kind = item.str("type", "message")
        if kind == "message":
            listed, text, attached = _message(item)
            images += attached
            role = listed["role"]
            turn = {"role": "system" if role == "developer" else role, "content": text}
            if role == "assistant" and reasoning:
                turn["reasoning_content"], reasoning = reasoning, ""
            turns.append(turn)
        elif kind == "function_call":
            call_id, name = item.str("call_id", required=True), item.str("name", required=True)
            arguments = item.str("arguments", required=True)
            listed = {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            last = turns[-1] if turns else None
            if last is None or last["role"] != "assistant":
                last = {"role": "assistant", "content": ""}
                turns.append(last)
            if reasoning:
                last["reasoning_content"], reasoning = reasoning, ""
            last.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            call_id = item.str("call_id", required=True)
            output = _output_text(item)
            listed = {"type": "function_call_output", "call_id": call_id, "output": output}
            turns.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            reasoning = _reasoning_text(item)
            listed = {"type": "reasoning", "summary": item.list("summary") or [], "content": item.list("content") or []}
        else:
            raise ApiError(400, f"input item type {kind!r} is not supported (message, function_call, "
                           "function_call_output and reasoning are)", param=item.name("type"))
        listed["id"] = item.str("id") or new_id(ITEM_PREFIX[kind])
        if kind != "reasoning":
            listed["status"] = "completed"
        items.append(listed)
    name_results(turns, turns)
    return items, turns, images


def name_results(turns: list[dict], conversation: list[dict]) -> None:
    """Gives each tool turn the name of the call it answers, from the calls in conversation
    (templates that show a result's function take it from there)."""
    names = {c["id"]: c["function"]["name"] for t in conversation for c in t.get("tool_calls", ())}
    for t in turns:
        if t["role"] == "tool" and t["tool_call_id"] in names:
            t.setdefault("name", names[t["tool_call_id"]])


# -- options ---------------------------------------------------------------------------------------

def _tools(f: Fields) -> tuple[list, list | None, object, str | dict | None]:
    """(tools as given, tools as chat tools, tool_choice as given, tool_choice for the Job)."""
    given = f.list("tools") or []
    tools = []
    for i, raw in enumerate(given):
        t = Fields(raw, f"tools[{i}]")
        if t.str("type", required=True) != "function":
            raise ApiError(400, f"'tools[{i}].type' {t.str('type')!r} is not supported: only function tools are",
                           param=f"tools[{i}].type")
        fn = {"name": t.str("name", required=True),
              "parameters": t.fields("parameters").obj if t.has("parameters") else {"type": "object", "properties": {}}}
        if t.has("description"):
            fn["description"] = t.str("description")
        tools.append({"type": "function", "function": fn})
    names = [t["function"]["name"] for t in tools]
    choice = f.raw("tool_choice", "auto")
    if choice == "auto":
        return given, tools or None, choice, None
    if choice == "none":   # tools not offered at all: the model answers in text
        return given, None, choice, None
    if choice == "required":
        if not tools:
            raise ApiError(400, "'tool_choice' is \"required\" but no tools are given", param="tool_choice")
        return given, tools, choice, "required"
    if isinstance(choice, dict):
        c = Fields(choice, "tool_choice")
        if c.str("type") == "function":
            name = c.str("name", required=True)
            if name not in names:
                raise ApiError(400, f"'tool_choice' names {name!r}, which is not one of the tools", param="tool_choice")
            return given, tools, {"type": "function", "name": name}, {"type": "function", "function": {"name": name}}
    raise ApiError(400, "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                   "{\"type\": \"function\", \"name\": ...}", param="tool_choice")


def _text_format(f: Fields) -> tuple[dict, object]:
    """(text.format as the response repeats it, the Job's format)."""
    text = f.fields("text")
    fmt = text.fields("format") if text is not None else None
    if fmt is None:
        return {"type": "text"}, None
    kind = fmt.str("type", required=True)
    if kind == "text":
        return {"type": "text"}, None
    if kind == "json_object":
        return {"type": "json_object"}, "json"
    if kind == "json_schema":
        schema = fmt.raw("schema")
        if not isinstance(schema, dict):
            raise ApiError(400, "'text.format.schema' must be an object", param="text.format.schema")
        shown = {"type": "json_schema", "name": fmt.str("name", "response"), "schema": schema,
                 "strict": fmt.bool("strict", False)}
        if fmt.has("description"):
            shown["description"] = fmt.str("description")
        return shown, schema
    raise ApiError(400, f"'text.format.type' must be text, json_object or json_schema, got {kind!r}",
                   param="text.format.type")


def _reasoning(f: Fields) -> tuple[dict, bool | None, bool]:
    """(reasoning as the response repeats it, the Job's think, whether a summary is asked for)."""
    r = f.fields("reasoning")
    effort = r.str("effort") if r is not None else None
    summary = (r.str("summary") or r.str("generate_summary")) if r is not None else None
    if effort is not None and effort not in EFFORTS:
        raise ApiError(400, f"'reasoning.effort' must be one of {', '.join(EFFORTS)}, got {effort!r}",
                       param="reasoning.effort")
    if summary is not None and summary not in SUMMARIES:
        raise ApiError(400, f"'reasoning.summary' must be one of {', '.join(SUMMARIES)}, got {summary!r}",
                       param="reasoning.summary")
    # The engine's thinking is on or off; every effort but "none" turns it on.
    think = None if effort is None else effort != "none"
    return {"effort": effort, "summary": summary}, think, summary is not None


def _metadata(f: Fields) -> dict:
    meta = f.fields("metadata")
    if meta is None:
        return {}
    if len(meta.obj) > 16:
        raise ApiError(400, "'metadata' holds at most 16 pairs", param="metadata")
    for key in meta.obj:
        value = meta.str(key)
        if len(key) > 64 or len(value or "") > 512:
            raise ApiError(400, "'metadata' keys are at most 64 characters and values at most 512",
                           param="metadata")
    return dict(meta.obj)


def parse_request(body: dict) -> ResponsesRequest:
    f = Fields(body)
    model = f.str("model", required=True)
    if f.bool("background", False):
        raise ApiError(400, "'background' responses are not supported; stream instead", param="background")
    if f.has("conversation"):
        raise ApiError(400, "'conversation' is not supported; continue with 'previous_response_id'",
                       param="conversation")
    if f.has("prompt"):
        raise ApiError(400, "stored prompts ('prompt') are not supported; send 'input'", param="prompt")
    items, messages, images = read_input(f)
    given_tools, tools, shown_choice, tool_choice = _tools(f)
    shown_format, fmt = _text_format(f)
    shown_reasoning, think, summary = _reasoning(f)
    max_tokens = f.int("max_output_tokens", lo=1)
    include = f.list("include") or []
    if not all(isinstance(v, str) for v in include):
        raise ApiError(400, "'include' must be an array of strings", param="include")
    logprobs = LOGPROBS in include   # the other includables name outputs this server does not make
    top = f.int("top_logprobs", 0, lo=0, hi=20)
    sampling = sampling_params(f, max(top, 1) if logprobs else 0)
    # A forced reply holds one call unless the client asks for several: a small model repeats a
    # forced call until the limit (as in the chat route); an auto one may hold several unless the
    # client says not. The response says which was applied.
    parallel = f.bool("parallel_tool_calls")
    job = Job(max_tokens=max_tokens, sampling=sampling, tools=tools, tool_choice=tool_choice,
              parallel_tool_calls=parallel, think=think, format=fmt)
    parallel = parallel if parallel is not None else tool_choice is None
    instructions = f.str("instructions")
    previous = f.str("previous_response_id")
    settings = {"instructions": instructions, "max_output_tokens": max_tokens, "metadata": _metadata(f),
                "parallel_tool_calls": parallel, "previous_response_id": previous, "reasoning": shown_reasoning,
                "store": f.bool("store", True), "temperature": sampling.temperature, "text": {"format": shown_format},
                "tool_choice": shown_choice, "tools": given_tools, "top_p": sampling.top_p,
                "truncation": "disabled", "user": f.str("user"), "background": False, "top_logprobs": top}
    return ResponsesRequest(model, items, messages, images, job, instructions, previous, f.bool("stream", False),
                            settings["store"], summary, logprobs, top, settings)


# -- output ----------------------------------------------------------------------------------------

def usage(prompt: int, cached: int, output: int, reasoning: int) -> dict:
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + output}


def response(rid: str, created_at: int, model: str, settings: dict, status: str, output: list[dict],
             use: dict | None, error: dict | None = None, incomplete: str | None = None,
             completed_at: int | None = None) -> dict:
    return {"id": rid, "object": "response", "created_at": created_at, "status": status,
            "completed_at": completed_at, "error": error,
            "incomplete_details": {"reason": incomplete} if incomplete else None, "model": model,
            "output": output, "usage": use, **settings}


def error_object(status: int, message: str) -> dict:
    """A failed response's error: the API's codes are few; a refused input is an invalid prompt."""
    return {"code": "invalid_prompt" if 400 <= status < 500 else "server_error", "message": message}


def message_item(item_id: str, text: str, status: str, logprobs: list | None = None) -> dict:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [text_part(text, logprobs)]}


def text_part(text: str, logprobs: list | None = None) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}


def reasoning_item(item_id: str, text: str, summary: bool, status: str) -> dict:
    """Reasoning as the model wrote it (reasoning_text); with a summary asked for, the same text is
    the summary, as no separate summary is made."""
    return {"id": item_id, "type": "reasoning", "status": status, "encrypted_content": None,
            "summary": [{"type": "summary_text", "text": text}] if summary else [],
            "content": [{"type": "reasoning_text", "text": text}]}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def as_turns(output: list[dict]) -> list[dict]:
    """A response's output items as the chat turns a follow-up's prompt holds: one assistant turn
    with its text, tool calls and reasoning."""
    turn = {"role": "assistant", "content": ""}
    for item in output:
        if item["type"] == "message":
            turn["content"] += "".join(p["text"] for p in item["content"])
        elif item["type"] == "reasoning":
            turn["reasoning_content"] = item["content"][0]["text"]
        elif item["type"] == "function_call":
            turn.setdefault("tool_calls", []).append(
                {"id": item["call_id"], "type": "function",
                 "function": {"name": item["name"], "arguments": item["arguments"]}})
    return [turn] if len(turn) > 2 or turn["content"] else []


def item_list(items: list[dict], limit: int, order: str, after: str | None) -> dict:
    """GET /v1/responses/{id}/input_items: a page of items."""
    ordered = items if order == "asc" else items[::-1]
    if after is not None:
        ids = [i["id"] for i in ordered]
        if after not in ids:
            raise ApiError(400, f"'after': no input item {after!r} in this response", param="after")
        ordered = ordered[ids.index(after) + 1:]
    page = ordered[:limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(ordered) > limit}


def deleted(rid: str) -> dict:
    return {"id": rid, "object": "response.deleted", "deleted": True}
