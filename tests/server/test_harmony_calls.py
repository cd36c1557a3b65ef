"""GPT-OSS tool calls through the server, on a tiny random gpt-oss model converted by llama.cpp's
convert_hf_to_gguf.py with harmony's markers as control tokens and GPT-OSS's own chat template: a
forced call (tool_choice required or named) is always written in harmony's syntax, with arguments
valid against the tool, and read back as that one call, streamed or not, through chat completions
and the Responses API; with tool_choice auto the output stays free but for the calls it opens,
which must go to the tools offered; a response format is the final message's JSON."""
import json
import re

import jsonschema
import pytest

from tensorsharp.chat.tool_parsers import harmony
from tensorsharp.engine.constraint import ConstraintError
from tensorsharp.server import generation
from tensorsharp.server.protocol.common import Job
from tensorsharp.testing import llama_convert
from tensorsharp.testing.server import ndjson_lines, sse_events

pytestmark = pytest.mark.hf

CLOCK = {"type": "function", "function": {"name": "get_time", "description": "The current time.", "parameters": {
    "type": "object", "required": ["zone"], "properties": {"zone": {"type": "string", "enum": ["CET", "UTC"]}}}}}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The coming weather.", "parameters": {
    "type": "object", "required": ["city", "days"],
    "properties": {"city": {"enum": ["Oslo", "Paris"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}}}}}
TOOLS = [CLOCK, WEATHER]
ASK = [{"role": "user", "content": "What time is it in Oslo, and what weather comes?"}]
# What the model writes for a call (the prompt ends with "<|start|>assistant"): messages on the
# analysis or commentary channel, then the recipient in the role or the channel header.
_BEFORE = r"(<\|channel\|>(analysis|commentary)<\|message\|>(.|\n)*?<\|end\|><\|start\|>assistant)*"
_CHANNEL = r"<\|channel\|>(commentary|analysis)"
CALL = re.compile(_BEFORE + rf"( to=functions\.(?P<a>\w+){_CHANNEL}|{_CHANNEL} to=functions\.(?P<b>\w+))"
                  r"( (<\|constrain\|>)?json)?<\|message\|>(?P<args>\{.*\})", re.S)
# Samplings enough that the forms of a call turn up (each did in 2 to 5 of the first 6 when written).
# That each form is accepted is tests/engine/test_constraint.py's to check: kernel numerics of another
# CPU pick other samples.
SAMPLINGS = [{"temperature": 0}] + [{"temperature": 1.0, "seed": s} for s in range(5)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers", minversion="5")
    from tensorsharp.server.app import create_app
    from tensorsharp.testing import tiny_gguf

    config = tiny_gguf.tiny_config("gpt_oss", vocab_size=49152 + len(harmony.MARKERS) + 1, max_position_embeddings=1024)
    path = llama_convert.convert(tiny_gguf.random_model(config, seed=0), special_tokens=harmony.MARKERS,
                                 files={"chat_template.jinja": llama_convert.chat_template("openai-gpt-oss-120b")})
    app = create_app(str(path), n_ctx=1024, n_threads=1, parallel=1, cache_slots=1,
                     upload_dir=tmp_path_factory.mktemp("uploads"))
    served = app.extensions["tensorsharp"].served
    assert served.chat.tool_family == "harmony"
    yield served, app.test_client()
    served.close()


@pytest.fixture
def written(monkeypatch):
    """The text each request's model wrote, as its reply parser was fed it."""
    texts = []
    new_reply = generation.new_reply

    def recording(served, job, prompt):
        reply = new_reply(served, job, prompt)
        texts.append([])
        feed = reply.feed

        def fed(text, into=texts[-1]):
            into.append(text)
            return feed(text)
        reply.feed = fed
        return reply
    monkeypatch.setattr(generation, "new_reply", recording)
    return lambda: "".join(texts[-1])


def _chat(client, model, body, stream, tools=TOOLS):
    r = client.post("/v1/chat/completions", json={"model": model, "messages": ASK, "max_tokens": 400, "stream": stream,
                                                  **({"tools": tools} if tools else {}), **body})
    assert r.status_code == 200, r.get_data(as_text=True)
    if not stream:
        choice = r.get_json()["choices"][0]
        msg = choice["message"]
        calls = [(c["function"]["name"], c["function"]["arguments"]) for c in msg.get("tool_calls") or []]
        return choice["finish_reason"], msg["content"] or "", msg.get("reasoning_content") or "", calls
    content, thinking, calls, finish = "", "", [], None
    for e in sse_events(r.data)[:-1]:
        choice = e["choices"][0]
        finish = choice["finish_reason"] or finish
        content += choice["delta"].get("content") or ""
        thinking += choice["delta"].get("reasoning_content") or ""
        for c in choice["delta"].get("tool_calls", []):
            if c["index"] == len(calls):
                calls.append([c["function"]["name"], ""])
            calls[c["index"]][1] += c["function"]["arguments"]
    return finish, content, thinking, [tuple(c) for c in calls]


def _check_call(calls, names, text):
    """The reply is one call to one of names with valid arguments, as the model wrote it."""
    (name, arguments), = calls
    assert name in names
    args = json.loads(arguments)
    jsonschema.validate(args, next(t for t in TOOLS if t["function"]["name"] == name)["function"]["parameters"])
    m = CALL.fullmatch(text)
    assert m, text
    assert (m["a"] or m["b"]) == name and json.loads(m["args"]) == args


def _messages(text, channel):
    return "".join(t.strip() for t in re.findall(rf"<\|channel\|>{channel}<\|message\|>((?:.|\n)*?)<\|end\|>", text))


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
@pytest.mark.parametrize("parallel", [None, True])   # not given (False alike) or asked for
def test_forced_call_is_always_one_valid_call(served, written, choice, parallel):
    served, client = served
    names = ["get_weather"] if isinstance(choice, dict) else ["get_time", "get_weather"]
    # A random model hardly ever ends a message of its own: the bias on <|end|> stands in for a
    # trained model's, so that the messages before a call end too.
    body = {"tool_choice": choice, "logit_bias": {str(served.tokenizer.token_id("<|end|>")): 8},
            **({} if parallel is None else {"parallel_tool_calls": parallel})}
    for sampling in SAMPLINGS:
        replies = []
        for stream in (False, True):
            finish, content, thinking, calls = _chat(client, served.name, {**body, **sampling}, stream)
            text = written()
            assert finish == "tool_calls"
            # <|call|> ends the generation: one call, parallel or not (GPT-OSS's template renders one
            # call per assistant message)
            _check_call(calls, names, text)
            # analysis is thinking; commentary preambles are content the user may see
            assert (thinking, content) == (_messages(text, "analysis"), _messages(text, "commentary"))
            replies.append((content, thinking, calls))
        assert replies[0] == replies[1]



def _respond(client, model, body, stream):
    """A /v1/responses reply to ASK with TOOLS as (status, output items, the streamed deltas of
    arguments, reasoning and text, joined in order of output item, or None unstreamed)."""
    tools = [{"type": "function", **t["function"]} for t in TOOLS]
    r = client.post("/v1/responses", json={"model": model, "input": ASK, "tools": tools, "max_output_tokens": 400,
                                           "stream": stream, **body})
    assert r.status_code == 200, r.get_data(as_text=True)
    if not stream:
        final = r.get_json()
        return final["status"], final["output"], None
    events = sse_events(r.data)
    deltas = {}
    for e in events:
        if e["type"].endswith(".delta"):
            deltas[e["output_index"]] = deltas.get(e["output_index"], "") + e["delta"]
    assert events[-1]["type"] == "response.completed"
    return events[-1]["response"]["status"], events[-1]["response"]["output"], deltas


def _item_text(item):
    return item["arguments"] if item["type"] == "function_call" else "".join(p["text"] for p in item["content"])


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "get_weather"}])
def test_forced_call_through_responses_is_one_valid_call(served, written, choice):
    served, client = served
    names = ["get_weather"] if isinstance(choice, dict) else ["get_time", "get_weather"]
    body = {"tool_choice": choice, "logit_bias": {str(served.tokenizer.token_id("<|end|>")): 8}}
    for sampling in SAMPLINGS:
        replies = []
        for stream in (False, True):
            status, output, deltas = _respond(client, served.name, {**body, **sampling}, stream)
            text = written()
            assert status == "completed", output
            # analysis messages are one reasoning item, commentary preambles one message, then the call
            kinds = [i["type"] for i in output]
            assert kinds[-1] == "function_call" and kinds[:-1] in ([], ["reasoning"], ["message"],
                                                                  ["reasoning", "message"], ["message", "reasoning"])
            by_kind = {"reasoning": {"type": "reasoning", "content": []}, "message": {"type": "message", "content": []},
                       **{i["type"]: i for i in output}}
            call = by_kind["function_call"]
            assert call["status"] == "completed" and call["call_id"]
            _check_call([(call["name"], call["arguments"])], names, text)
            assert _item_text(by_kind["reasoning"]) == _messages(text, "analysis")
            assert _item_text(by_kind["message"]) == _messages(text, "commentary")
            if deltas is not None:   # the stream's deltas build each item
                assert deltas == {i: _item_text(item) for i, item in enumerate(output) if _item_text(item)}
            replies.append([{k: v for k, v in i.items() if k not in ("id", "call_id")} for i in output])
        assert replies[0] == replies[1]


def test_auto_stays_free_in_every_dialect(served, written):
    # The random model never writes a call of its own: each reply is free text up to the limit.
    served, client = served
    finish, content, _, calls = _chat(client, served.name, {"temperature": 0, "max_tokens": 24}, stream=True)
    assert (finish, calls) == ("length", []) and content.strip() and not CALL.fullmatch(written())
    r = client.post("/api/chat", json={"model": served.name, "messages": ASK, "tools": TOOLS,
                                       "options": {"num_predict": 24}})
    lines = ndjson_lines(r.data)
    assert lines[-1]["done_reason"] == "length" and "".join(line["message"]["content"] for line in lines).strip()
    assert not any(line["message"].get("tool_calls") for line in lines)
    events = sse_events(client.post("/api/chat", json={"messages": ASK, "tools": TOOLS, "maxTokens": 24}).data)
    assert events[-1]["done"] and "".join(e.get("token", "") for e in events).strip()
    assert not any(e.get("tool_calls") for e in events)


def test_auto_calls_go_only_to_the_tools_offered(served):
    # The random model never opens a call of its own: the constraint the server gives an auto
    # reply is fed one.
    served, _ = served
    tokenizer = served.tokenizer

    def write(text):
        c = generation.constraint_for(served, Job(messages=ASK, tools=TOOLS))
        for frag in tokenizer.vocab.partition(text, parse_special=True):
            for t in [frag] if isinstance(frag, int) else tokenizer.encode(frag, add_special=False):
                c.accept(t)
        return c
    assert write('<|channel|>commentary to=functions.get_time<|message|>{"zone": "UTC"}<|call|>').is_done()
    with pytest.raises(ConstraintError):
        write('<|channel|>commentary to=functions.get_date<|message|>{}')


ANSWER = re.compile(r"(<\|channel\|>analysis<\|message\|>(.|\n)*?<\|end\|><\|start\|>assistant)*"
                    r"<\|channel\|>final( (<\|constrain\|>)?json)?<\|message\|>(?P<json>\{.*\})", re.S)


def test_response_format_is_the_final_message(served, written):
    served, client = served
    hour = {"type": "integer", "minimum": 0, "maximum": 23}
    schema = {"type": "object", "required": ["zone", "hour"],
              "properties": {"zone": {"enum": ["CET", "UTC"]}, "hour": hour}}
    body = {"response_format": {"type": "json_schema", "json_schema": {"name": "time", "schema": schema}},
            "logit_bias": {str(served.tokenizer.token_id("<|end|>")): 8}}
    analysed = 0
    for sampling in SAMPLINGS:
        for stream in (False, True):
            finish, content, thinking, calls = _chat(client, served.name, {**body, **sampling}, stream, tools=None)
            text = written()
            m = ANSWER.fullmatch(text)
            assert m and finish == "stop" and not calls, text
            jsonschema.validate(json.loads(content), schema)
            assert content == m["json"] and thinking == _messages(text, "analysis")
            analysed += "<|start|>assistant" in text
    assert analysed   # some samplings reasoned before answering
