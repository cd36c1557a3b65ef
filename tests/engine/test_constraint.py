"""Constraints on the real SmolLM2 (and Qwen) tokenizers, and constrained generation with SmolLM2:
every sample of twenty schemas validates, and forced tool calls always parse."""
import copy
import gc
import json
import re
import weakref

import jsonschema
import numpy as np
import pytest

from tensorsharp.chat.schema import schema_instruction, validate_output
from tensorsharp.chat.template import ChatTemplate
from tensorsharp.chat.tool_parsers import harmony
from tensorsharp.engine.constraint import (MAX_MESSAGES_BEFORE_CALL, MAX_PARALLEL_CALLS, ConstraintError,
                                           bounded_schema, harmony_call_constraint, harmony_lazy_call_constraint,
                                           json_schema_constraint, lazy_tool_call_constraint, lltokenizer,
                                           tool_call_constraint)
from tensorsharp.engine.sampler import SamplingParams
from tensorsharp.gguf import GGUFFile
from tensorsharp.llm import Model
from tensorsharp.testing.constrained import SCHEMA_CASES, generate_batch
from tensorsharp.testing.models import model_path
from tensorsharp.tokenizer import Tokenizer

HERMES = {"prefix": "<tool_call>\n", "suffix": "\n</tool_call>"}
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                        "units": {"type": "string", "enum": ["c", "f"]}},
                       "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Get the current time in a time zone.",
        "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET", "PST"]}},
                       "required": ["zone"], "additionalProperties": False}}},
]


def _tokenizer(name):
    return Tokenizer.from_metadata(GGUFFile(model_path(name)).metadata)


@pytest.fixture(scope="module")
def tok():
    return _tokenizer("smollm2-135m")


def _allowed(c, tok):
    mask = np.zeros((tok.vocab_size + 31) // 32, np.uint32)
    c.fill_mask(mask)
    bits = np.unpackbits(mask.view(np.uint8), bitorder="little")[: tok.vocab_size]
    return set(np.flatnonzero(bits).tolist())


def _feed(c, tok, text):
    for t in tok.encode(text, add_special=False):
        c.accept(t)


def test_lltokenizer_is_built_once_per_tokenizer(tok):
    assert lltokenizer(tok) is lltokenizer(tok)
    assert lltokenizer(tok).vocab_size == tok.vocab_size


def test_lltokenizer_cache_lets_the_tokenizer_go():
    t = _tokenizer("smollm2-135m")
    lltokenizer(t)
    ref = weakref.ref(t)
    del t
    gc.collect()
    assert ref() is None


def test_object_schema_starts_with_a_brace(tok):
    c = json_schema_constraint(tok, {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    allowed = _allowed(c, tok)
    # The key is forced, so llguidance keeps to the canonical tokens of '{"a": ' ('{"' here).
    assert allowed == {tok.encode('{"', add_special=False)[0]}
    free = _allowed(json_schema_constraint(tok, {"type": "object"}), tok)
    assert tok.encode("{", add_special=False)[0] in free
    assert all(tok.token_to_piece(t).startswith(b"{") for t in free)
    assert not c.allows_eos() and not c.is_done()


def test_forced_sequence_is_accepted_and_completes(tok):
    c = json_schema_constraint(tok, {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    _feed(c, tok, '{"a": 12')
    assert not c.is_done()
    _feed(c, tok, "}")
    assert c.is_done() and c.allows_eos()
    # Nothing can follow the closed object but the end of generation.
    assert _allowed(c, tok) == set(tok.eog_ids)


def test_wrong_token_raises(tok):
    c = json_schema_constraint(tok, {"type": "object"})
    with pytest.raises(ConstraintError, match="breaks the output grammar"):
        c.accept(tok.encode("x", add_special=False)[0])
    c = json_schema_constraint(tok, {"type": "object", "properties": {"n": {"enum": ["yes", "no"]}}})
    _feed(c, tok, '{"n": "')
    with pytest.raises(ConstraintError):
        _feed(c, tok, "maybe")


def test_eos_allowed_where_the_value_could_go_on(tok):
    c = json_schema_constraint(tok, {"type": "integer"})
    _feed(c, tok, "12")
    allowed = _allowed(c, tok)
    assert c.allows_eos() and not c.is_done()
    assert set(tok.eog_ids) <= allowed and tok.encode("3", add_special=False)[0] in allowed
    c.accept(tok.eos_id)
    assert c.is_done()


def test_any_object_for_json_mode(tok):
    for schema in (None, {}):
        c = json_schema_constraint(tok, schema)
        _feed(c, tok, '{"x": [1, {"y": null}], "z": "w"}')
        assert c.is_done()
        with pytest.raises(ConstraintError):
            json_schema_constraint(tok, schema).accept(tok.encode("[", add_special=False)[0])


def test_fill_mask_checks_and_clears_rows_past_the_vocabulary(tok):
    c = json_schema_constraint(tok, None)
    with pytest.raises(ValueError):
        c.fill_mask(np.zeros((tok.vocab_size + 31) // 32, np.int64))
    with pytest.raises(ValueError):
        c.fill_mask(np.zeros(3, np.uint32))
    mask = np.full((tok.vocab_size + 31) // 32 + 4, 0xFFFFFFFF, np.uint32)
    c.fill_mask(mask)
    assert not mask[-4:].any() and mask.any()


def test_hermes_tool_call(tok):
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "units": "c"}}\n</tool_call>'
    c = tool_call_constraint(tok, TOOLS, "required", **HERMES, parallel=False)
    _feed(c, tok, call)
    assert c.is_done()
    # Parallel: after one call, another may follow or generation may end.
    c = tool_call_constraint(tok, TOOLS, "required", **HERMES)
    _feed(c, tok, call)
    assert c.allows_eos() and not c.is_done()
    _feed(c, tok, '\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "UTC"}}\n</tool_call>')
    assert c.allows_eos()


@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "get_wind"',                                    # no such tool
    '<tool_call>\n{"name": "get_time", "arguments": {"city": "Paris"}}',   # another tool's arguments
    '<tool_call>\n{"name": "get_time", "arguments": {"zone": "EST"}}',     # not in the enum
    '{"name": "get_time"',                                                 # no prefix
    'Sure! <tool_call>',                                                   # text before the call
])
def test_hermes_tool_call_rejects(tok, text):
    c = tool_call_constraint(tok, TOOLS, "required", **HERMES)
    with pytest.raises(ConstraintError):
        _feed(c, tok, text)


def test_named_choice_allows_only_that_function(tok):
    choice = {"type": "function", "function": {"name": "get_time"}}
    c = tool_call_constraint(tok, TOOLS, choice, **HERMES)
    _feed(c, tok, '<tool_call>\n{"name": "get_')
    with pytest.raises(ConstraintError):
        _feed(c, tok, "weather")
    c = tool_call_constraint(tok, TOOLS, choice, **HERMES)
    _feed(c, tok, '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>')
    assert c.allows_eos()


def test_array_syntax_and_arguments_key(tok):
    c = tool_call_constraint(tok, TOOLS, "required", prefix="", suffix="", arguments_key="parameters",
                             as_array=True)
    _feed(c, tok, '[{"name": "get_time", "parameters": {"zone": "UTC"}}, '
                  '{"name": "get_weather", "parameters": {"city": "Oslo"}}]')
    assert c.is_done()
    c = tool_call_constraint(tok, TOOLS, "required", prefix="", suffix="", as_array=True, parallel=False)
    _feed(c, tok, '[{"name": "get_time", "arguments": {"zone": "UTC"}}')
    with pytest.raises(ConstraintError):
        _feed(c, tok, ", ")


def test_control_token_in_prefix_is_matched_as_that_token(tok):
    # SmolLM2 has no tool-call token; <|im_start|> stands in for one such as [TOOL_CALLS].
    start = tok.token_id("<|im_start|>")
    c = tool_call_constraint(tok, TOOLS, "required", prefix="<|im_start|>", suffix="", as_array=True)
    assert _allowed(c, tok) == {start}
    c.accept(start)
    _feed(c, tok, '[{"name": "get_time", "arguments": {"zone": "PST"}}]')
    assert c.is_done()


def test_user_defined_tool_call_token_is_text():
    # Qwen's <tool_call> is a user-defined token: one token, but ordinary text to the grammar.
    qwen = _tokenizer("qwen2.5-coder-0.5b")
    c = tool_call_constraint(qwen, TOOLS, "required", **HERMES)
    assert qwen.token_id("<tool_call>") in _allowed(c, qwen)
    _feed(c, qwen, '<tool_call>\n{"name": "get_time", "arguments": {"zone": "UTC"}}\n</tool_call>')
    assert c.allows_eos()


def test_sentencepiece_space_prefix_stays_out_of_forced_text():
    # Gemma's file turns the prefix off; a copy with it on stands in for Llama 2 style models.
    gemma = _tokenizer("gemma3-270m")
    vocab = copy.copy(gemma.vocab)
    vocab.add_space_prefix = True
    spaced = Tokenizer(vocab)
    text = '{"a": 1}'
    assert spaced.encode(text, add_special=False) != gemma.encode(text, add_special=False)
    assert lltokenizer(spaced).tokenize_str(text) == gemma.encode(text, add_special=False)
    c = json_schema_constraint(spaced, {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    _feed(c, gemma, text)
    assert c.is_done()


def _rejects(c, tok, text):
    """Whether some token of text breaks c (the tokens before it are accepted)."""
    try:
        _feed(c, tok, text)
    except ConstraintError:
        return True
    return False


@pytest.fixture(scope="module")
def qwen_tok():
    return _tokenizer("qwen2.5-coder-0.5b")


def _lazy_hermes(tok):
    return lazy_tool_call_constraint(tok, TOOLS, trigger="<tool_call>", **HERMES)


def test_lazy_tool_call_is_free_until_the_trigger(qwen_tok):
    c = _lazy_hermes(qwen_tok)
    free = _allowed(c, qwen_tok)
    assert len(free) > 0.99 * qwen_tok.vocab_size and qwen_tok.eog_ids <= free
    _feed(c, qwen_tok, "I can look that up. Paris is in France {\"name\": \"Paris\"} ")
    assert c.allows_eos() and not c.is_done()   # the reply may end here, or go on
    assert _allowed(c, qwen_tok) == free
    c.accept(qwen_tok.token_id("<tool_call>"))
    assert _allowed(c, qwen_tok) == set(qwen_tok.encode("\n", add_special=False))
    assert not c.allows_eos()                   # an opened call must be finished


@pytest.mark.parametrize("call", [
    '\n{"name": "Paris", "arguments": {}}',                                # a tool never offered
    '\n{"name": "get_weather", "arguments": {"zone": "UTC"}}',            # another tool's argument
    '\n{"name": "get_weather", "arguments": {"city": "Paris", "units": "k"}}',   # not in the enum
    '\n{"name": "get_time", "arguments": {}}',                             # a required one missing
    '{"name": "get_time", "arguments": {"zone": "UTC"}}',                  # not the family's layout
])
def test_lazy_tool_call_holds_an_opened_call_to_the_tools(qwen_tok, call):
    c = _lazy_hermes(qwen_tok)
    _feed(c, qwen_tok, "Let me check.\n<tool_call>")
    assert _rejects(c, qwen_tok, call + "\n</tool_call>")


def test_lazy_tool_call_allows_text_and_more_calls_after_a_call(qwen_tok):
    c = _lazy_hermes(qwen_tok)
    call = '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>'
    _feed(c, qwen_tok, "First the time.\n" + call + "\nNow the weather:\n")
    assert c.allows_eos() and len(_allowed(c, qwen_tok)) > 0.99 * qwen_tok.vocab_size
    _feed(c, qwen_tok, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>')
    assert c.allows_eos()
    assert _rejects(c, qwen_tok, '<tool_call>\n{"name": "get_date", "arguments": {}}')


def test_lazy_tool_call_without_parallel_calls_ends_with_the_call(qwen_tok):
    c = lazy_tool_call_constraint(qwen_tok, TOOLS, trigger="<tool_call>", bare_start=True, parallel=False, **HERMES)
    _feed(c, qwen_tok, 'First the time.\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>')
    assert c.allows_eos() and _allowed(c, qwen_tok) == set(qwen_tok.eog_ids)


def test_lazy_array_call_without_parallel_calls_holds_one_call(tok):
    start = tok.token_id("<|im_start|>")
    c = lazy_tool_call_constraint(tok, TOOLS, trigger="<|im_start|>", prefix="<|im_start|>", suffix="",
                                  as_array=True, free_markers=("<file_sep>",), parallel=False)
    c.accept(tok.token_id("<file_sep>"))   # a marker in the free text before the call
    _feed(c, tok, "Checking.")
    c.accept(start)
    _feed(c, tok, '[{"name": "get_time", "arguments": {"zone": "PST"}}')
    assert _allowed(c, tok) == set(tok.encode("]", add_special=False))
    c.accept(tok.token_id("]"))
    assert c.allows_eos() and _allowed(c, tok) == set(tok.eog_ids)


def test_lazy_tool_call_spelled_in_pieces_still_triggers(qwen_tok):
    # "<tool_call>" written as several ordinary tokens rather than its own token opens a call too.
    c = _lazy_hermes(qwen_tok)
    for piece in ("<", "tool", "_call", ">"):
        (t,) = qwen_tok.encode(piece, add_special=False)
        c.accept(t)
    assert _allowed(c, qwen_tok) == set(qwen_tok.encode("\n", add_special=False))


def test_lazy_tool_call_lets_free_text_hold_control_token_markers(tok):
    # <file_sep> stands in for a reasoning marker held as a control token (Magistral's [THINK]).
    c = lazy_tool_call_constraint(tok, TOOLS, trigger="<|im_start|>", prefix="<|im_start|>", suffix="",
                                  as_array=True, free_markers=("<file_sep>", "<|im_start|>"))
    _feed(c, tok, "Thinking")
    assert tok.token_id("<file_sep>") in _allowed(c, tok) and tok.token_id("<repo_name>") not in _allowed(c, tok)
    c.accept(tok.token_id("<file_sep>"))
    _feed(c, tok, "Done.")
    c.accept(tok.token_id("<|im_start|>"))
    assert _allowed(c, tok) == set(tok.encode("[", add_special=False))


def _lazy_bare(tok):
    return lazy_tool_call_constraint(tok, TOOLS, trigger="<tool_call>", bare_start=True,
                                     bare_openings=("```json",), **HERMES)


@pytest.mark.parametrize("text", [
    '{"name": "Paris", "arguments": {}}',                                      # a bare call opening the answer
    '\n{\n  "name": "Paris"',                                                   # laid out another way
    '{"name": "get_time", "arguments": {"zone": "UTC"}}\n{"name": "Paris"',     # a bare call after a call
    'Here it is:\n```json\n{"name": "Paris", "arguments": {}}\n```',             # in a fence
])
def test_lazy_tool_call_holds_bare_calls_to_the_tools(qwen_tok, text):
    assert _rejects(_lazy_bare(qwen_tok), qwen_tok, text)


@pytest.mark.parametrize("text", [
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    '{"city": "Paris", "name": "Paris"}',                  # JSON that is no call stays content
    'Here it is:\n```json\n{"zone": "UTC"}\n```\nand {"name": "anything"} in prose.',
])
def test_lazy_tool_call_leaves_other_json_free(qwen_tok, text):
    c = _lazy_bare(qwen_tok)
    _feed(c, qwen_tok, text)
    assert c.allows_eos()


def test_lazy_tool_call_with_a_control_token_trigger(tok):
    # SmolLM2 has no tool-call token; <|im_start|> stands in for Mistral's [TOOL_CALLS].
    start = tok.token_id("<|im_start|>")
    c = lazy_tool_call_constraint(tok, TOOLS, trigger="<|im_start|>", prefix="<|im_start|>", suffix="",
                                  as_array=True)
    _feed(c, tok, "Checking the time.")
    assert start in _allowed(c, tok) and c.allows_eos()
    assert tok.token_id("<file_sep>") not in _allowed(c, tok)   # free text holds no control token
    c.accept(start)
    assert _allowed(c, tok) == set(tok.encode("[", add_special=False))
    _feed(c, tok, '[{"name": "get_time", "arguments": {"zone": "PST"}}, ')
    assert _rejects(c, tok, '{"name": "Paris", "arguments": {}}]')


@pytest.fixture(scope="module")
def harmony_tok():
    """SmolLM2's vocabulary with harmony's markers added as control tokens, as GPT-OSS holds them."""
    md = dict(GGUFFile(model_path("smollm2-135m")).metadata)
    md["tokenizer.ggml.tokens"] = list(md["tokenizer.ggml.tokens"]) + list(harmony.MARKERS)
    md["tokenizer.ggml.token_type"] = list(md["tokenizer.ggml.token_type"]) + [3] * len(harmony.MARKERS)  # CONTROL
    return Tokenizer.from_metadata(md)


def _feed_harmony(c, tok, text):
    for frag in tok.vocab.partition(text, parse_special=True):
        for t in [frag] if isinstance(frag, int) else tok.encode(frag, add_special=False):
            c.accept(t)


_THINK = "<|channel|>analysis<|message|>The user wants the time.<|end|><|start|>assistant"


@pytest.mark.parametrize("text", [
    '<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>{"zone": "UTC"}<|call|>',
    ' to=functions.get_time<|channel|>commentary json<|message|>{"zone": "CET"}<|call|>',   # as the template writes it
    _THINK + '<|channel|>commentary to=functions.get_weather<|message|>{"city": "Oslo"}<|call|>',
    _THINK + "<|channel|>commentary<|message|>Checking.<|end|><|start|>assistant"                # and a preamble
    + '<|channel|>analysis to=functions.get_time <|constrain|>json<|message|>{"zone": "PST"}<|call|>',
    _THINK * MAX_MESSAGES_BEFORE_CALL + ' to=functions.get_time<|channel|>commentary<|message|>{"zone": "UTC"}<|call|>',
])
def test_harmony_forced_call(harmony_tok, text):
    c = harmony_call_constraint(harmony_tok, TOOLS, "required")
    _feed_harmony(c, harmony_tok, text)
    assert c.is_done()


@pytest.mark.parametrize("text", [
    "<|channel|>final<|message|>It is noon.",                                     # an answer, no call
    "<|channel|>analysis<|message|>Done.<|end|><|start|>assistant<|channel|>final",
    '<|channel|>commentary to=functions.get_date<|message|>{}',                   # a tool never offered
    '<|channel|>commentary to=functions.get_time<|message|>{"zone": "EST"}',      # not in the enum
    '<|channel|>commentary to=functions.get_time<|message|>{"zone": "UTC"}<|return|>',   # the call must end in <|call|>
    '<|channel|>commentary to=functions.get_time<|message|>{"zone": "UTC"}<|call|><|start|>',
    "<|channel|>analysis<|message|>I <|end|> see.",                               # the first <|end|> ends the message
    _THINK * (MAX_MESSAGES_BEFORE_CALL + 1),
])
def test_harmony_forced_call_rejects(harmony_tok, text):
    c = harmony_call_constraint(harmony_tok, TOOLS, "required")
    with pytest.raises(ConstraintError):
        _feed_harmony(c, harmony_tok, text)


def test_harmony_named_call_allows_only_that_function(harmony_tok):
    named = {"type": "function", "function": {"name": "get_weather"}}
    c = harmony_call_constraint(harmony_tok, TOOLS, named)
    _feed_harmony(c, harmony_tok, _THINK + "<|channel|>commentary to=functions.get_")
    assert harmony_tok.encode("time", add_special=False)[0] not in _allowed(c, harmony_tok)
    _feed_harmony(c, harmony_tok, 'weather<|message|>{"city": "Oslo"}<|call|>')
    assert c.is_done()


def test_harmony_message_text_holds_no_control_token(harmony_tok):
    c = harmony_call_constraint(harmony_tok, TOOLS, "required")
    _feed_harmony(c, harmony_tok, "<|channel|>analysis<|message|>Thinking")
    allowed = _allowed(c, harmony_tok)
    assert harmony_tok.token_id("<|end|>") in allowed and len(allowed) > 0.99 * harmony_tok.vocab_size
    assert not {harmony_tok.token_id(m) for m in ("<|call|>", "<|return|>", "<|start|>", "<|message|>")} & allowed


@pytest.mark.parametrize("text", [
    "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>It is noon.",
    "<|channel|>analysis<|message|>One could write to=functions.anything in prose.<|end|>",   # no header
    '<|channel|>analysis to=browser.search<|message|>{"query": "noon"}<|call|>',          # a built-in tool
    "Text from a model that does not speak harmony {\"name\": \"x\"}",
    _THINK + '<|channel|>commentary to=functions.get_weather<|message|>{"city": "Oslo"}<|call|>',
    '<|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{"zone": "UTC"}<|call|>',
])
def test_harmony_auto_reply_is_free_but_for_its_calls_to_functions(harmony_tok, text):
    c = harmony_lazy_call_constraint(harmony_tok, TOOLS)
    _feed_harmony(c, harmony_tok, text)
    assert c.allows_eos()


@pytest.mark.parametrize("text", [
    '<|channel|>commentary to=functions.get_date<|message|>{}',                   # a tool never offered
    _THINK + ' to=functions.get_time<|channel|>commentary<|message|>{"zone": "EST"}',
    '<|channel|>commentary to=functions.get_time<|message|>{"zone": "UTC"}<|return|>',
])
def test_harmony_auto_reply_holds_its_calls_to_the_tools(harmony_tok, text):
    with pytest.raises(ConstraintError):
        _feed_harmony(harmony_lazy_call_constraint(harmony_tok, TOOLS), harmony_tok, text)


def test_harmony_auto_reply_leaves_the_vocabulary_free(harmony_tok):
    c = harmony_lazy_call_constraint(harmony_tok, TOOLS)
    allowed = _allowed(c, harmony_tok)
    markers = {harmony_tok.token_id(m) for m in harmony.MARKERS} - {harmony_tok.token_id("<|call|>")}
    assert markers | harmony_tok.eog_ids <= allowed and len(allowed) > 0.99 * harmony_tok.vocab_size


@pytest.mark.parametrize("tools, choice, match", [
    (TOOLS, "auto", "constrains nothing"),
    (TOOLS, {"type": "function", "function": {"name": "nope"}}, "not among the tools"),
    ([], "required", "at least one tool"),
    ([{"type": "function", "function": {"description": "no name"}}], "required", "needs a function with a name"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "not": {}}}}],
     "required", "tool 'f'.*not"),
])
def test_tool_constraint_errors(tok, tools, choice, match):
    with pytest.raises(ConstraintError, match=match):
        tool_call_constraint(tok, tools, choice, **HERMES)


# --- generation with the real model ---------------------------------------------------------

SAMPLES = 20


@pytest.fixture(scope="module")
def smollm2():
    model = Model(str(model_path("smollm2-135m")), n_ctx=2048)
    return model, ChatTemplate.for_model(model.gguf.metadata, model.tokenizer)


def _prompt(smollm2, system, user):
    model, template = smollm2
    return model.tokenize_prompt(template.render([{"role": "system", "content": system},
                                                  {"role": "user", "content": user}]))


@pytest.mark.parametrize("case", range(len(SCHEMA_CASES)))
def test_every_sample_matches_the_schema(smollm2, case):
    model = smollm2[0]
    task, schema = SCHEMA_CASES[case]
    jsonschema.Draft202012Validator.check_schema(schema)
    prompt = _prompt(smollm2, schema_instruction(schema), task)
    constraints = [json_schema_constraint(model.tokenizer, schema) for _ in range(SAMPLES)]
    outs = generate_batch(model, prompt, constraints, 300, SamplingParams(temperature=0.8, seed=1000 * case))
    for o in outs:
        assert o.done, f"cut off: {o.text!r}"
        jsonschema.validate(validate_output(o.text, schema), schema)


def _tool_system_prompt():
    return ("You can call these functions:\n" + "\n".join(json.dumps(t["function"]) for t in TOOLS)
            + '\nTo call one, answer with <tool_call>\n{"name": <function name>, "arguments": '
              "<arguments object>}\n</tool_call>")


def _calls(text):
    return [json.loads(body) for body in re.findall(r"<tool_call>\n(.*?)\n</tool_call>", text, re.S)]


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_time"}}])
def test_forced_tool_calls_always_parse(smollm2, choice):
    model = smollm2[0]
    prompt = _prompt(smollm2, _tool_system_prompt(), "What is the weather in Paris, and what time is it in Berlin?")
    constraints = [tool_call_constraint(model.tokenizer, TOOLS, choice, **HERMES) for _ in range(SAMPLES)]
    outs = generate_batch(model, prompt, constraints, 300, SamplingParams(temperature=0.8, seed=7))
    params = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for o in outs:
        calls = _calls(o.text)
        assert o.done and calls, f"no complete call in {o.text!r}"
        for call in calls:
            assert call["name"] in params
            if isinstance(choice, dict):
                assert call["name"] == "get_time"
            jsonschema.validate(call["arguments"], params[call["name"]])


def test_numbers_end_within_their_digit_budget(tok):
    schema = {"type": "object", "properties": {"x": {"type": "number"}, "n": {"type": "integer"}},
              "required": ["x", "n"]}
    c = json_schema_constraint(tok, schema)
    _feed(c, tok, '{"x": -3.123456, "n": 999999999999999}')
    assert c.is_done()
    with pytest.raises(ConstraintError):
        _feed(json_schema_constraint(tok, schema), tok, '{"x": 3.1234567')
    with pytest.raises(ConstraintError):
        _feed(json_schema_constraint(tok, schema), tok, '{"x": 1, "n": 12345678901234567')


def test_bounded_schema_keeps_what_the_schema_says():
    s = {"type": "object", "properties": {"a": {"type": ["number", "null"], "maximum": 3},
                                          "b": {"type": "integer", "multipleOf": 5},
                                          "c": {"const": {"type": "number"}}}}
    got = bounded_schema(s)
    assert got["additionalProperties"] is False
    assert got["properties"]["a"] == {"type": ["number", "null"], "maximum": 3, "multipleOf": 1e-6,
                                      "minimum": -1e15}
    assert got["properties"]["b"] == {"type": "integer", "multipleOf": 5, "minimum": -1e15, "maximum": 1e15}
    assert got["properties"]["c"] == {"const": {"type": "number"}}   # a literal value, not a subschema
    assert s["properties"]["a"] == {"type": ["number", "null"], "maximum": 3} and "additionalProperties" not in s
    opened = {"type": "object", "properties": {"a": {}}, "additionalProperties": {"type": "string"}}
    assert bounded_schema(opened) == opened
    assert "additionalProperties" not in bounded_schema({"type": "object"})   # any object stays any object


def test_tool_arguments_take_only_declared_keys(tok):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    c = tool_call_constraint(tok, tools, "required", prefix="<tool_call>\n", suffix="\n</tool_call>")
    with pytest.raises(ConstraintError):
        _feed(c, tok, '<tool_call>\n{"name": "f", "arguments": {"city": "Paris", "units": "c"}')


def test_parallel_calls_are_bounded(tok):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    c = tool_call_constraint(tok, tools, "required", prefix="<tool_call>\n", suffix="\n</tool_call>")
    call = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
    _feed(c, tok, "\n".join([call] * MAX_PARALLEL_CALLS))
    assert c.is_done()
