"""Responses API input items read into chat turns, tools and options; refused requests name the field."""
import pytest

from tensorsharp.chat.output import ContentDelta, ThinkingDelta, ToolCallDelta
from tensorsharp.server.errors import ApiError
from tensorsharp.server.protocol.responses_events import OutputBuilder
from tensorsharp.server.protocol.responses import as_turns, item_list, parse_request

SMOL = "smollm2-135m"
WEATHER = {"type": "function", "name": "get_weather", "description": "Get current weather for a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
           "strict": True}


def test_input_items_become_chat_turns():
    req = parse_request({"model": SMOL, "instructions": "Be brief.", "input": [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in "},
                                                         {"type": "input_text", "text": "Paris?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "call it"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city": "Lyon"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "18"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "20"}]},
    ], "tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather"}})
    assert req.messages == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "reasoning_content": "call it", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18", "name": "get_weather"},
        {"role": "tool", "tool_call_id": "c2", "content": "20", "name": "get_weather"}]
    assert req.instructions == "Be brief." and req.items[2]["id"] == "rs_1"
    assert all(i["id"] for i in req.items) and len({i["id"] for i in req.items}) == len(req.items)
    assert req.job.tools == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER["parameters"], "description": WEATHER["description"]}}]
    assert req.job.tool_choice == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize("body, param", [
    ({"input": []}, "input"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0].type"),
    ({"input": "x", "tool_choice": "required"}, "tool_choice"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "a"}}}, "text.format.schema"),
    ({"input": "x", "reasoning": {"effort": "huge"}}, "reasoning.effort"),
    ({"input": "x", "metadata": {"k": 1}}, "metadata.k"),
    ({"input": "x", "background": True}, "background"),
])
def test_refused_requests_name_the_field(body, param):
    with pytest.raises(ApiError) as e:
        parse_request({"model": SMOL, **body})
    assert e.value.status == 400 and e.value.param == param


def test_output_items_as_the_next_prompt_turns():
    output = [{"type": "reasoning", "content": [{"type": "reasoning_text", "text": "hmm"}], "summary": []},
              {"type": "message", "content": [{"type": "output_text", "text": "Let me look."}]},
              {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"}]
    assert as_turns(output) == [{"role": "assistant", "content": "Let me look.", "reasoning_content": "hmm",
                                 "tool_calls": [{"id": "c1", "type": "function",
                                                 "function": {"name": "get_weather", "arguments": "{}"}}]}]
    assert as_turns([]) == []   # a response that said nothing adds no empty turn


def test_input_item_pages():
    items = [{"id": f"i{n}"} for n in range(5)]
    page = item_list(items, 2, "desc", None)
    assert [i["id"] for i in page["data"]] == ["i4", "i3"] and page["has_more"] and page["last_id"] == "i3"
    page = item_list(items, 2, "desc", page["last_id"])
    assert [i["id"] for i in page["data"]] == ["i2", "i1"]
    page = item_list(items, 10, "asc", "i3")
    assert [i["id"] for i in page["data"]] == ["i4"] and not page["has_more"]
    with pytest.raises(ApiError):
        item_list(items, 2, "asc", "nope")


def test_output_items_sent_back_as_input_make_the_same_turns():
    # Clients that keep the conversation themselves send a response's output items back as input.
    b = OutputBuilder(summary=True)
    b.feed([ThinkingDelta("hmm"), ContentDelta("Let me look."), ToolCallDelta(0, "c1", "get_weather", "{}")])
    b.finish("completed")
    req = parse_request({"model": SMOL, "input": [{"role": "user", "content": "Weather?"}, *b.output,
                                                  {"type": "function_call_output", "call_id": "c1", "output": "18"}]})
    assert req.messages[1:] == as_turns(b.output) + [
        {"role": "tool", "tool_call_id": "c1", "content": "18", "name": "get_weather"}]
    assert [i["id"] for i in req.items[1:4]] == [i["id"] for i in b.output]
