"""Reply deltas into Responses output items and the events that build them: items open and close
in the model's order, and the events rebuild exactly the output the response carries."""
from tensorsharp.chat.output import ContentDelta, ThinkingDelta, ToolCallDelta
from tensorsharp.server.protocol.responses_events import OutputBuilder

DELTAS = [[ThinkingDelta("Think")], [ThinkingDelta("ing.")], [ContentDelta("")], [ContentDelta("Hi")],
          [ContentDelta(" there"), ToolCallDelta(0, "call_a", "f", '{"x":')], [ToolCallDelta(0, None, None, " 1}")],
          [ToolCallDelta(1, "call_b", "g", "{}")]]


def _run(summary: bool, status: str = "completed"):
    b = OutputBuilder(summary)
    events = [e for d in DELTAS for e in b.feed(d)] + b.finish(status)
    return b.output, events


def _replay(events) -> list[dict]:
    """The output a client rebuilds from the events alone."""
    items = {}
    for e in events:
        kind = e["type"]
        if kind == "response.output_item.added":
            items[e["output_index"]] = {**e["item"], "text": ""}
        elif kind.endswith(".delta"):
            assert items[e["output_index"]]["id"] == e["item_id"]
            items[e["output_index"]]["text"] += e["delta"]
        elif kind == "response.output_item.done":
            items[e["output_index"]] = e["item"]
    return [items[i] for i in sorted(items)]


def test_items_in_order_with_their_text():
    output, events = _run(summary=False)
    reasoning, message, call_a, call_b = output
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Thinking."}] and reasoning["summary"] == []
    assert message["content"][0]["text"] == "Hi there" and message["status"] == "completed"
    assert (call_a["call_id"], call_a["name"], call_a["arguments"]) == ("call_a", "f", '{"x": 1}')
    assert (call_b["call_id"], call_b["arguments"]) == ("call_b", "{}")
    assert _replay(events) == output
    assert len({i["id"] for i in output}) == 4
    kinds = [e["type"] for e in events]
    assert kinds.count("response.output_item.added") == kinds.count("response.output_item.done") == 4
    assert "response.reasoning_text.delta" in kinds and "response.reasoning_summary_text.delta" not in kinds
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["name"], e["arguments"]) for e in done] == [("f", '{"x": 1}'), ("g", "{}")]


def test_summary_and_cut_short():
    output, events = _run(summary=True, status="incomplete")
    assert output[0]["summary"] == [{"type": "summary_text", "text": "Thinking."}]
    kinds = [e["type"] for e in events]
    assert "response.reasoning_summary_text.delta" in kinds and "response.reasoning_text.delta" not in kinds
    assert [i["status"] for i in output] == ["completed", "completed", "completed", "incomplete"]


def test_a_reply_with_nothing_is_one_empty_message():
    b = OutputBuilder(False)
    assert b.feed([ContentDelta("")]) == []
    events = b.finish("completed")
    assert [i["type"] for i in b.output] == ["message"] and b.output[0]["content"][0]["text"] == ""
    assert [e["type"] for e in events][0] == "response.output_item.added"


def test_logprobs_go_with_the_message_text_they_made():
    lp = [{"token": str(n), "logprob": -n, "bytes": [], "top_logprobs": []} for n in range(5)]
    b = OutputBuilder(False)
    events = b.feed([ThinkingDelta("hmm")], lp[0])           # reasoning: no message logprob
    events += b.feed([], lp[1])                              # held back...
    events += b.feed([ContentDelta("ab")], lp[2])            # ...then out with this token's text
    events += b.feed([], lp[3])
    events += b.feed([ToolCallDelta(0, "c", "f", "{}")], lp[4])   # held text that became a call
    events += b.finish("completed")
    deltas = [e["logprobs"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas == [lp[1:3]] and b.output[1]["content"][0]["logprobs"] == lp[1:3]
    (done,) = [e for e in events if e["type"] == "response.output_text.done"]
    assert done["logprobs"] == lp[1:3]
