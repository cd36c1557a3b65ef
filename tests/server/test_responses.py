"""The OpenAI Responses API through the official openai client against live servers (SmolLM2;
Qwen2.5-Coder for tools), and reasoning items and failures in process (a scripted reply parser)."""
import json

import openai
import pytest
from pydantic import BaseModel

from tensorsharp.chat.output import ContentDelta, ThinkingDelta
from tensorsharp.server import generation
from tensorsharp.server.protocol.responses_events import OutputBuilder
from tensorsharp.server.reply import Reply
from tensorsharp.server.routes.responses import _Frames
from tensorsharp.server.streaming import sse_event
from tensorsharp.testing.scripted import ScriptedParser
from tensorsharp.testing.server import running, serve_args, sse_events

SMOL = "smollm2-135m"
QWEN = "qwen2.5-coder-0.5b"
WEATHER = {"type": "function", "name": "get_weather", "description": "Get current weather for a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
           "strict": True}
RESULT = '{"city": "Paris", "temperature": 18, "units": "c", "sky": "sunny"}'


def _client(tmp_path_factory, model: str):
    with running(serve_args(model, "--ctx", "1024", "--parallel", "1"), tmp_path_factory.mktemp("responses")) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    yield from _client(tmp_path_factory, SMOL)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    yield from _client(tmp_path_factory, QWEN)


def test_create_retrieve_list_and_delete(smol):
    r = smol.responses.create(model=SMOL, input="What is 2+3?", max_output_tokens=20, temperature=0,
                              metadata={"case": "sum"})
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
    assert "5" in r.output_text and r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.metadata == {"case": "sum"} and r.store and r.instructions is None
    told = smol.responses.create(model=SMOL, instructions="Answer in French.", input="What is 2+3?",
                                 max_output_tokens=1)
    longer = smol.responses.create(model=SMOL, instructions="Answer in French. " * 11, input="What is 2+3?",
                                   max_output_tokens=1)
    assert told.instructions == "Answer in French." and longer.usage.input_tokens >= told.usage.input_tokens + 40

    assert smol.responses.retrieve(r.id).output_text == r.output_text
    (item,) = smol.responses.input_items.list(r.id).data
    assert item.type == "message" and item.role == "user" and item.content[0].text == "What is 2+3?"
    smol.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        smol.responses.retrieve(r.id)

    unstored = smol.responses.create(model=SMOL, input="Hi", max_output_tokens=4, store=False)
    with pytest.raises(openai.NotFoundError):
        smol.responses.retrieve(unstored.id)


def test_streams_the_documented_events(smol):
    ask = {"model": SMOL, "input": [{"role": "user", "content": "What is 2+3?"}], "max_output_tokens": 20,
           "temperature": 0}
    whole = smol.responses.create(**ask)
    events = list(smol.responses.create(**ask, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == whole.output_text
    assert events[-1].response.output_text == whole.output_text and events[-1].response.usage.output_tokens

    with smol.responses.stream(**ask) as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == final.output_text == whole.output_text


def test_previous_response_id_continues_with_the_cached_prefix(smol):
    first = smol.responses.create(model=SMOL, input="My name is Ada. Say hello to me.", max_output_tokens=16)
    second = smol.responses.create(model=SMOL, input="What is my name?", previous_response_id=first.id,
                                   max_output_tokens=16)
    assert second.previous_response_id == first.id
    # The earlier prompt (and reply, but its end-of-turn) is evaluated again nowhere.
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens
    (item,) = smol.responses.input_items.list(second.id).data   # only this turn's input
    assert item.content[0].text == "What is my name?"
    with pytest.raises(openai.NotFoundError):
        smol.responses.create(model=SMOL, input="x", previous_response_id="resp_missing")


def test_cut_short_is_incomplete(smol):
    r = smol.responses.create(model=SMOL, input="Write a long story about a dragon.", max_output_tokens=3)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.output[0].status == "incomplete" and r.usage.output_tokens == 3
    events = list(smol.responses.create(model=SMOL, input="Write a long story.", max_output_tokens=3, stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.incomplete_details.reason == \
        "max_output_tokens"


class Capital(BaseModel):
    city: str
    country: str


def test_structured_output(smol):
    r = smol.responses.parse(model=SMOL, input="What is the capital of France?", text_format=Capital,
                             max_output_tokens=60)
    # The small model's casing of the country sits on a near tie: any float change flips it.
    assert r.output_parsed.city == "Paris" and r.output_parsed.country.lower() == "france"
    r = smol.responses.create(model=SMOL, input="What is the capital of France? Reply in JSON.",
                              max_output_tokens=60, text={"format": {"type": "json_object"}})
    assert isinstance(json.loads(r.output_text), dict) and r.text.format.type == "json_object"


def test_errors_in_the_openai_dialect(smol):
    with pytest.raises(openai.NotFoundError):
        smol.responses.create(model="gpt-4o", input="x")
    with pytest.raises(openai.BadRequestError) as e:
        smol.responses.create(model=SMOL, input=[{"type": "web_search_call", "id": "ws_1"}])
    assert e.value.body["param"] == "input[0].type"
    with pytest.raises(openai.BadRequestError):
        smol.responses.create(model=SMOL, input="x", tools=[{"type": "web_search"}])


def test_tool_call_and_its_output(qwen):
    ask = {"model": QWEN, "input": "What is the weather in Paris?", "tools": [WEATHER], "max_output_tokens": 100,
           "instructions": "You are a helpful assistant. When a tool result arrives, answer in one plain sentence."}
    r = qwen.responses.create(**ask)
    (call,) = [o for o in r.output if o.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments)["city"] == "Paris"
    assert call.call_id.startswith("call_") and call.id.startswith("fc_") and call.status == "completed"

    events = list(qwen.responses.create(**ask, stream=True))
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert args == done.arguments == call.arguments and done.name == "get_weather"

    # The result goes back as a function_call_output item after the stored call; "none" lets
    # this small model answer rather than call again.
    answer = qwen.responses.create(model=QWEN, previous_response_id=r.id, tools=[WEATHER], tool_choice="none",
                                   input=[{"type": "function_call_output", "call_id": call.call_id, "output": RESULT}],
                                   max_output_tokens=60, instructions=ask["instructions"])
    assert answer.status == "completed" and "18" in answer.output_text
    assert not [o for o in answer.output if o.type == "function_call"]


def test_previous_response_id_remembers(qwen):
    first = qwen.responses.create(model=QWEN, input="My name is Ada.", max_output_tokens=20)
    second = qwen.responses.create(model=QWEN, input="What is my name?", previous_response_id=first.id,
                                   max_output_tokens=20)
    assert "Ada" in second.output_text


# -- reasoning, from a scripted parser (no served model here thinks) ----------------------------------


@pytest.fixture
def thinks(monkeypatch):
    monkeypatch.setattr(generation, "new_reply", lambda served, job, prompt: Reply(ScriptedParser()))


@pytest.mark.parametrize("summary", [None, "auto"])
def test_reasoning_items(client, thinks, summary):
    body = {"model": SMOL, "input": "Weather?", "max_output_tokens": 4,
            "reasoning": {"summary": summary} if summary else None}
    r = client.post("/v1/responses", json=body).get_json()
    reasoning, message, call = r["output"]
    assert reasoning["type"] == "reasoning" and reasoning["content"][0]["type"] == "reasoning_text"
    assert [s["text"] for s in reasoning["summary"]] == ([reasoning["content"][0]["text"]] if summary else [])
    assert message["type"] == "message" and call["type"] == "function_call" and call["call_id"] == "call_1"
    assert call["arguments"] == '{"city": "Paris"}' and r["usage"]["output_tokens_details"]["reasoning_tokens"] == 1
    assert r["reasoning"] == {"effort": None, "summary": summary}

    events = sse_events(client.post("/v1/responses", json={**body, "stream": True}).data)
    kinds = [e["type"] for e in events]
    delta = "response.reasoning_summary_text.delta" if summary else "response.reasoning_text.delta"
    assert kinds.index(delta) < kinds.index("response.output_text.delta")
    assert [e["item"]["type"] for e in events if e["type"] == "response.output_item.done"] == \
        ["reasoning", "message", "function_call"]
    assert events[-1]["response"]["output"] == [e["item"] for e in events if e["type"] == "response.output_item.done"]


def test_follow_up_carries_reasoning_and_calls_into_the_prompt(client, thinks, monkeypatch):
    r = client.post("/v1/responses", json={"model": SMOL, "input": "Weather?", "max_output_tokens": 4}).get_json()
    follow = client.post("/v1/responses", json={"model": SMOL, "previous_response_id": r["id"], "input": [
        {"type": "function_call_output", "call_id": "call_1", "output": RESULT}], "max_output_tokens": 2})
    assert follow.status_code == 200 and follow.get_json()["usage"]["input_tokens_details"]["cached_tokens"] > 0
    # The result is named after the stored call it answers (templates may show it).
    shown = []
    monkeypatch.setattr(generation, "prompt_text", lambda served, job: shown.append(job.messages) or "Hi")
    client.post("/v1/responses", json={"model": SMOL, "previous_response_id": r["id"], "input": [
        {"type": "function_call_output", "call_id": "call_1", "output": RESULT}], "max_output_tokens": 1})
    assert shown[0][-1] == {"role": "tool", "tool_call_id": "call_1", "content": RESULT, "name": "get_weather"}
    assert shown[0][-2]["tool_calls"][0]["id"] == "call_1"


def test_effort_needs_a_model_that_thinks(client):
    body = {"model": SMOL, "input": "Hi", "max_output_tokens": 1}
    r = client.post("/v1/responses", json={**body, "reasoning": {"effort": "low"}})
    assert r.status_code == 400 and r.get_json()["error"]["param"] == "reasoning.effort"
    assert client.post("/v1/responses", json={**body, "reasoning": {"effort": "none"}}).status_code == 200


def test_logprobs_when_included(client):
    body = {"model": SMOL, "input": "What is 2+3?", "max_output_tokens": 6, "top_logprobs": 2,
            "include": ["message.output_text.logprobs"]}
    r = client.post("/v1/responses", json=body).get_json()
    part = r["output"][0]["content"][0]
    assert len(part["logprobs"]) == r["usage"]["output_tokens"] and r["top_logprobs"] == 2
    assert "".join(lp["token"] for lp in part["logprobs"]) == part["text"]
    assert all(len(lp["top_logprobs"]) == 2 and lp["logprob"] <= 0 for lp in part["logprobs"])
    events = sse_events(client.post("/v1/responses", json={**body, "stream": True}).data)
    streamed = [lp for e in events if e["type"] == "response.output_text.delta" for lp in e["logprobs"]]
    assert streamed == events[-1]["response"]["output"][0]["content"][0]["logprobs"]
    # The same tokens; their logprobs differ in the last digits once the prompt is cached (issue 19.7).
    assert [lp["token"] for lp in streamed] == [lp["token"] for lp in part["logprobs"]]
    del body["include"]
    assert client.post("/v1/responses", json=body).get_json()["output"][0]["content"][0]["logprobs"] == []


def test_refusals_name_this_dialects_fields(client):
    r = client.post("/v1/responses", json={"model": SMOL, "input": "x", "tools": [WEATHER],
                                           "text": {"format": {"type": "json_object"}}})
    assert r.status_code == 400 and r.get_json()["error"]["param"] == "text.format"
    r = client.post("/v1/responses", json={"model": SMOL, "input": "word " * 3000})
    assert r.status_code == 400 and r.get_json()["error"]["param"] == "input"


def test_json_cut_off_by_the_limit_is_incomplete(client):
    # As the API answers: JSON cut off by max_output_tokens is not a failure but an incomplete
    # response carrying the partial text (the client libraries raise their own truncation errors).
    body = {"model": SMOL, "input": "Give me a JSON object.", "max_output_tokens": 2,
            "text": {"format": {"type": "json_object"}}}
    r = client.post("/v1/responses", json=body)
    assert r.status_code == 200
    got = r.get_json()
    assert got["status"] == "incomplete" and got["incomplete_details"] == {"reason": "max_output_tokens"}
    events = sse_events(client.post("/v1/responses", json={**body, "stream": True}).data)
    assert events[-1]["type"] == "response.incomplete"
    assert client.get(f"/v1/responses/{got['id']}").get_json()["status"] == "incomplete"


# -- frames -------------------------------------------------------------------------------------------

TEXTS = [" the", 'say "hi"', "back\\slash", "tab\tnew\nline\r", "\x00\x1f\x7f", "é 漢字 🙂", "\ud800",
         "\u2028\u2029", "</script>", "\ue000 private \ue001"]


@pytest.mark.parametrize("summary", [False, True])
def test_text_delta_frames_are_the_events_fully_encoded(summary):
    # Text deltas fill a frame encoded once per item; every frame must be what encoding its event gives.
    builder, frames, events = OutputBuilder(summary), _Frames(), []
    for kind in (ThinkingDelta, ContentDelta, ThinkingDelta):   # a new item of a kind seen before
        for text in TEXTS:
            events += builder.feed([kind(text)])
    events += builder.feed([ContentDelta("x")], {"token": "x", "logprob": -0.5, "bytes": [120], "top_logprobs": []})
    events += builder.finish("completed")
    for seq, e in enumerate(events):
        e["sequence_number"] = seq
        assert frames(e) == sse_event(e)
    assert sum(e["type"].endswith("text.delta") for e in events) == 3 * len(TEXTS) + 1


def test_streamed_frames_on_the_wire_are_their_events_encoded(client, thinks):
    body = {"model": SMOL, "input": "Weather?", "max_output_tokens": 4, "stream": True}
    data = client.post("/v1/responses", json=body).data.decode()
    frames = [f + "\n\n" for f in data.split("\n\n") if f]
    assert len(frames) > 10
    for f in frames:
        assert f == sse_event(json.loads(f.split("data: ", 1)[1]))
