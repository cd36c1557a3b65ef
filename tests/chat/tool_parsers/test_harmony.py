"""GPT-OSS harmony output: analysis -> thinking, final -> content, commentary to=functions.NAME ->
tool calls, whole and streamed."""
import functools

from tensorsharp.chat.tool_parsers.harmony import HarmonyParser

ANSWER = ("<|channel|>analysis<|message|>User asks the weather. Need to call get_weather.<|end|>"
          "<|start|>assistant<|channel|>final<|message|>It is sunny in Paris.<|return|>")
# The recipient after the channel (as the model writes it), and before it (as the template
# renders earlier calls), with and without <|constrain|>.
CALL_AFTER = ("<|channel|>analysis<|message|>Need the weather.<|end|>"
              "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
              '<|message|>{"location": "Paris", "unit": "c"}<|call|>')
CALL_BEFORE = ' to=functions.get_weather<|channel|>commentary json<|message|>{"location": "Paris"}<|call|>'


def test_analysis_is_thinking_final_is_content(parse):
    got = parse(HarmonyParser, ANSWER)
    assert got.thinking == "User asks the weather. Need to call get_weather."
    assert got.content == "It is sunny in Paris." and got.calls == []


def test_call_with_the_recipient_after_the_channel(parse):
    got = parse(HarmonyParser, CALL_AFTER)
    assert got.calls == [("get_weather", '{"location": "Paris", "unit": "c"}')]
    assert got.thinking == "Need the weather." and got.content == ""


def test_call_with_the_recipient_before_the_channel(parse):
    got = parse(HarmonyParser, CALL_BEFORE)
    assert got.calls == [("get_weather", '{"location": "Paris"}')] and got.content == ""


def test_preamble_on_commentary_is_content_and_two_calls(parse):
    text = ("<|channel|>commentary<|message|>Checking both cities.<|end|>"
            '<|start|>assistant to=functions.a<|channel|>commentary json<|message|>{"x": 1}<|call|>'
            '<|start|>assistant to=functions.b<|channel|>commentary json<|message|>{"y": "<|"}<|call|>')
    got = parse(HarmonyParser, text)
    assert got.content == "Checking both cities."
    assert got.calls == [("a", '{"x": 1}'), ("b", '{"y": "<|"}')]


def test_without_tools_a_call_is_content(parse):
    got = parse(functools.partial(HarmonyParser, calls=False), CALL_BEFORE)
    assert got.calls == [] and got.content == '{"location": "Paris"}'


def test_think_false_drops_the_analysis(parse):
    got = parse(functools.partial(HarmonyParser, keep_thinking=False), ANSWER)
    assert got.thinking == "" and got.content == "It is sunny in Paris."


def test_text_outside_harmony_is_content(parse):
    got = parse(HarmonyParser, "Just an answer, no channels.")
    assert got.content == "Just an answer, no channels." and got.thinking == "" and got.calls == []


def test_cut_off_answer_keeps_what_came(feed):
    # The token limit ends the final message before <|return|>.
    got = feed(HarmonyParser(), ["<|channel|>final<|message|>It is sun", "ny<|"])
    assert got.content == "It is sunny<|"
