"""Constrained decoding with llguidance: token masks for JSON schemas and tool calls in a family's syntax."""
from __future__ import annotations

import copy
import json
import re
import threading
import weakref

import llguidance as llg
import numpy as np

from tensorsharp.chat.tool_parsers import harmony
from tensorsharp.errors import TensorSharpError
from tensorsharp.tokenizer import Tokenizer
from tensorsharp.tokenizer.vocab import ATTR_CONTROL


class ConstraintError(TensorSharpError):
    """A grammar cannot be built, or a token breaks it."""


# Compact JSON as Python's json.dumps writes it. Free whitespace would let a small model pad its
# output with newlines until max_tokens; fixed separators keep every token on the content. Even
# whitespace bounded as llama.cpp's JSON grammar bounds it (a space, or a newline and up to 20
# spaces or tabs, between two tokens) did worse: SmolLM2 completed 137/200 json_object answers to
# the twenty schema tasks at T=1.0 (compact: 167), Qwen2.5-Coder 199 (compact: 198), and both
# all 200 of the schemas at T=0.8 (tools/bench_constraint.py --json-object --json-whitespace).
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

# A small model at a high temperature can run on forever where the grammar lets it: digits of a
# number, one more parallel call, one more invented key. The constraint admits a subset of the
# valid outputs that always ends: at most this many calls, numbers with at most 15 integer and 6
# fraction digits, and objects with declared properties closed to others unless the schema says
# "additionalProperties" (as llama.cpp's schema grammars do).
MAX_PARALLEL_CALLS = 8
_NUMBER_LIMITS = {"multipleOf": 1e-6, "minimum": -1e15, "maximum": 1e15}
_LITERALS = ("const", "enum", "default", "examples")   # JSON values, not subschemas


def bounded_schema(schema):
    """schema with every number (and integer) subschema also bounded in digits and every object
    subschema that lists properties closed to undeclared ones (unless it says otherwise); the
    outputs it admits are valid instances of the original schema."""
    if isinstance(schema, list):
        return [bounded_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k in _LITERALS else bounded_schema(v)) for k, v in schema.items()}
    if isinstance(out.get("properties"), dict) and "additionalProperties" not in out \
            and "patternProperties" not in out:
        out["additionalProperties"] = False
    kinds = out.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "number" in kinds or "integer" in kinds:
        for key, value in _NUMBER_LIMITS.items():
            if key == "multipleOf" and ("integer" in kinds or key in out):
                continue
            out.setdefault(key, value)
    return out

# Error messages without llguidance's parser-state dump (it can echo the whole grammar).
_LIMITS = llg.LLParserLimits(verbose_errors=False)

_lltokenizers: "weakref.WeakKeyDictionary[Tokenizer, llg.LLTokenizer]" = weakref.WeakKeyDictionary()
_lltokenizers_lock = threading.Lock()


class _TokenizerAdapter:
    """What llguidance.TokenizerWrapper reads: token bytes, special ids and a tokenize callable."""

    def __init__(self, tokenizer: Tokenizer):
        attrs = tokenizer.vocab.attrs
        if not tokenizer.eog_ids:
            raise ConstraintError("the tokenizer has no end-of-generation token to end constrained output")
        # A tokenizer of our own over the same tables: the cache entry must not keep the model's
        # alive, and llguidance tokenizes text it forces in the middle of the output, where
        # SentencePiece's leading space does not belong.
        vocab = copy.copy(tokenizer.vocab)
        vocab.add_space_prefix = False
        tokenizer = self._tokenizer = Tokenizer(vocab)
        self.eos_token_id = tokenizer.eos_id if tokenizer.eos_id is not None else min(tokenizer.eog_ids)
        self.bos_token_id = tokenizer.bos_id
        self.special_token_ids = [i for i, a in enumerate(attrs) if a & ATTR_CONTROL]
        # llguidance marks special tokens with a leading 0xFF byte (never valid UTF-8): grammars
        # name them as <|im_end|> or <[id]>, and text never matches them. User-defined tokens
        # (Qwen's <tool_call>, Gemma's newline runs) stay ordinary text.
        piece = tokenizer.token_to_piece
        self.tokens = [b"\xff" + piece(i, True) if a & ATTR_CONTROL else piece(i, False)
                       for i, a in enumerate(attrs)]

    def __call__(self, text):
        # Refusing bytes makes TokenizerWrapper pass str: a byte string cut inside a character
        # has no tokenization of its own.
        if not isinstance(text, str):
            raise TypeError("tokenize takes str")
        return self._tokenizer.encode(text, add_special=False)


def lltokenizer(tokenizer: Tokenizer) -> llg.LLTokenizer:
    """llguidance's view of our tokenizer, built on first use and kept as long as the Tokenizer
    (about 1.5 s and ~400 bytes a token: 100 MB for a 262k vocabulary, so a model that is never
    asked for constrained output never holds it)."""
    with _lltokenizers_lock:
        ll = _lltokenizers.get(tokenizer)
        if ll is None:
            adapter = _TokenizerAdapter(tokenizer)
            wrapper = llg.TokenizerWrapper(adapter)
            ll = llg.LLTokenizer(wrapper, n_vocab=tokenizer.vocab_size, eos_token=sorted(tokenizer.eog_ids))
            # llguidance copied the token bytes into its own tables; the Python list (15 MB for a
            # 262k vocabulary) stays reachable from the wrapper it keeps for tokenizing, unread.
            wrapper.tokens = adapter.tokens = ()
            _lltokenizers[tokenizer] = ll
        return ll


def has_lltokenizer(tokenizer: Tokenizer) -> bool:
    """lltokenizer(tokenizer) has been built (and holds its memory)."""
    with _lltokenizers_lock:
        return tokenizer in _lltokenizers


class Constraint:
    """The grammar state of one request's output; used only on the engine thread."""

    def __init__(self, tokenizer: Tokenizer, grammar: str):
        self.grammar = grammar   # what another process builds the same constraint from (cluster/)
        self._matcher = llg.LLMatcher(lltokenizer(tokenizer), grammar, log_level=0, limits=_LIMITS)
        if self._matcher.is_error():
            raise ConstraintError(f"cannot build the output grammar: {self._matcher.get_error()}")
        self.n_words = (tokenizer.vocab_size + 31) // 32

    def fill_mask(self, out: np.ndarray) -> None:
        """out: (ceil(n_vocab/32),) uint32, bit i % 32 of word i // 32 set = token i allowed. A
        model whose output rows outnumber the tokenizer's tokens passes a longer out: the rows
        without a token are never allowed."""
        if out.dtype != np.uint32 or out.ndim != 1 or not out.flags.c_contiguous or out.size < self.n_words:
            raise ValueError(f"fill_mask wants a contiguous uint32 array of at least {self.n_words} words")
        self._matcher.unsafe_compute_mask_ptr(out.ctypes.data, self.n_words * 4)
        out[self.n_words:] = 0

    def accept(self, token: int) -> None:
        if not self._matcher.consume_token(int(token)):
            raise ConstraintError(f"token {token} breaks the output grammar: {self._matcher.get_error()}")

    def is_done(self) -> bool:
        """The output is complete: nothing can follow (or an end-of-generation token was accepted)."""
        return self._matcher.is_stopped()

    def allows_eos(self) -> bool:
        """The output so far is complete, so the mask allows the end-of-generation tokens."""
        return self._matcher.is_accepting()


def json_schema_grammar(schema: dict | None) -> str:
    """llguidance grammar of the JSON texts that satisfy schema (None or {}: any JSON object)."""
    return llg.LLMatcher.grammar_from_json_schema(bounded_schema(schema or {"type": "object"}), overrides=JSON_OPTIONS)


def grammar_error(grammar: str) -> str | None:
    """Why llguidance cannot compile grammar (an unsupported keyword, a bad pattern ...), or None."""
    err, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar, None, limits=_LIMITS)
    return messages[0] if err else None


def json_schema_constraint(tokenizer: Tokenizer, schema: dict | None) -> Constraint:
    """Output that is one JSON text matching schema (None or {}: any JSON object, for OpenAI
    json_object and Ollama format "json")."""
    return Constraint(tokenizer, json_schema_grammar(schema))


def tool_call_constraint(tokenizer: Tokenizer, tools: list[dict], choice, *, prefix: str, suffix: str,
                         arguments_key: str = "arguments", as_array: bool = False,
                         parallel: bool = True) -> Constraint:
    """Output that is tool calls in a family's wire syntax, e.g. Hermes:
    prefix "<tool_call>\\n", JSON {"name": <tool>, "arguments": <its parameters>}, suffix "\\n</tool_call>".

    tools: OpenAI/Ollama tool objects ({"type": "function", "function": {...}}). choice:
    "required" (any tool) or {"type": "function", "function": {"name": ...}} (that tool).
    as_array: the calls form one JSON array between one prefix and suffix (Mistral's
    [TOOL_CALLS][...]); otherwise each call has its own prefix and suffix, one per line.
    parallel: one or more calls; else exactly one."""
    rules, body = _function_rules(_chosen_functions(tools, choice), arguments_key)
    pre, post = _lark_text(tokenizer, prefix), _lark_text(tokenizer, suffix)
    if as_array:
        items = f"call (\", \" call){{0,{MAX_PARALLEL_CALLS - 1}}}" if parallel else "call"
        start = [f"start: {pre} \"[\" {items} \"]\" {post}", f"call: {body}"]
    else:
        start = [f"start: call (\"\\n\" call){{0,{MAX_PARALLEL_CALLS - 1}}}" if parallel else "start: call",
                 f"call: {pre} ({body}) {post}"]
    return Constraint(tokenizer, llg.LLMatcher.grammar_from_lark("\n".join(start + rules)))


_CALL_OPENING = '{"name": "'
# The same opening as a model may lay it out.
_NAME_OPENING = r'[ \t\r\n]*\{[ \t\r\n]*"name"[ \t\r\n]*:[ \t\r\n]*"'


def lazy_tool_call_constraint(tokenizer: Tokenizer, tools: list[dict], *, trigger: str, prefix: str, suffix: str,
                              arguments_key: str = "arguments", as_array: bool = False, bare_start: bool = False,
                              bare_openings: tuple[str, ...] = (), free_markers: tuple[str, ...] = (),
                              parallel: bool = True) -> Constraint:
    """Free text in which every call the model opens must name an offered tool and carry arguments
    valid against its parameters; then free text again (llama.cpp's lazy grammars). A call to a
    tool that was not offered cannot be written.

    trigger (may be ""): what opens a call anywhere (Hermes "<tool_call>", Mistral's [TOOL_CALLS]
    token); the rest of prefix, the call(s) and suffix follow as in tool_call_constraint.
    bare_start: a call object with no marker may also open the answer or follow a call.
    bare_openings: text after which a call object is a call (a ```json fence); other JSON
    there or at the start stays free. free_markers: markers the free text may hold (reasoning
    markers such as Magistral's [THINK]), needed here for the vocabularies that hold them as
    control tokens, which free text otherwise leaves out. parallel False: at most one call, with
    which the output ends (llama.cpp's lazy grammars without parallel_tool_calls)."""
    functions = _chosen_functions(tools, "required")
    rules, body = _function_rules(functions, arguments_key)
    # A call without a marker is known by its opening `{"name": "`, so from there on only the
    # rest of an offered tool's call object can follow (tail<i>: its name onwards).
    tails = " | ".join(f"tail{i}" for i in range(len(functions)))
    parts, heads = [], []
    if trigger:
        rest = prefix[len(trigger):] if prefix.startswith(trigger) else prefix
        trig = _lark_text(tokenizer, trigger)
        pre, post = _lark_text(tokenizer, rest), _lark_text(tokenizer, suffix)
        if as_array:
            more = f" (\", \" ({body})){{0,{MAX_PARALLEL_CALLS - 1}}}" if parallel else ""
            items = f"\"[\" ({body}){more} \"]\""
        else:
            items = f"({body})"
        parts.append(f"head {pre} {items} {post}")
        # The free text must end where the trigger first appears, or the model could write a whole
        # call inside it: a lexeme ending with a text trigger does so only when lazy; a control
        # token ends it anyway, as free text never holds one (which also keeps other control
        # tokens out of it, but for the end-of-generation ones).
        heads.append(f"head: TEXT {trig}" if "<[" in trig else f"head[lazy]: TEXT {trig}")
    if bare_start:   # only first, or right after a call or marker: elsewhere free text holds it
        parts.append(f"bare ({tails})")
        heads.append(f"bare[lazy]: /{_NAME_OPENING}/")
    for i, opening in enumerate(bare_openings):
        parts.append(f"fenced{i} ({tails})")
        heads.append(f"fenced{i}[lazy]: TEXT {_lark_string(opening)} /{_NAME_OPENING}/")
    if not parts:
        raise ConstraintError("a lazy tool-call constraint needs a trigger or a bare call form")
    tokens = {_lark_text(tokenizer, m) for m in free_markers} - {_lark_text(tokenizer, trigger)}
    tokens = sorted(t for t in tokens if re.fullmatch(r"<\[\d+\]>", t))
    marked = ["TEXT (" + " | ".join(tokens) + ")"] if tokens else []   # free text up to such a marker, then on
    if parallel:
        start = ["start: part* TEXT", "part: " + " | ".join(parts + marked)]
    else:   # free text (and markers) only before the call
        start = ["start: marked* (call | TEXT)" if marked else "start: call | TEXT", "call: " + " | ".join(parts),
                 *(["marked: " + marked[0]] if marked else [])]
    start = ["%llguidance {}", *start, *heads, "TEXT: /(.|\\n)*/"]
    return Constraint(tokenizer, llg.LLMatcher.grammar_from_lark("\n".join(start + rules)))


# Messages GPT-OSS may write before a forced call (its reasoning on the analysis channel, a
# preamble on commentary): bounded, so a model that keeps opening new ones still reaches the call.
MAX_MESSAGES_BEFORE_CALL = 4


def harmony_call_constraint(tokenizer: Tokenizer, tools: list[dict], choice) -> Constraint:
    """Output that is a tool call in GPT-OSS's harmony format, from after the prompt's
    "<|start|>assistant" (the grammar llama.cpp's gpt-oss parser builds for a required call): up to
    MAX_MESSAGES_BEFORE_CALL messages on the analysis or commentary channel, each ended by <|end|>
    and followed by "<|start|>assistant"; then the call, its recipient in the role header
    (` to=functions.NAME<|channel|>commentary json<|message|>`, as the template writes earlier
    calls) or in the channel header (`<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>`,
    as the harmony documents show), JSON arguments valid against the tool's parameters, <|call|>.

    One call whatever parallel_tool_calls says: <|call|> ends the generation, handing the turn to
    the tool (the template, too, renders one call per assistant message)."""
    functions = _chosen_functions(tools, choice)
    m = _harmony_markers(tokenizer)
    channel = f'{m["channel"]} ("commentary" | "analysis")'
    rules = ["%llguidance {}",
             f"start: before{{0,{MAX_MESSAGES_BEFORE_CALL}}} call",
             *_harmony_messages(m, '("analysis" | "commentary")'),
             "call: (" + " | ".join(f"tool{i}" for i in range(len(functions))) + f') {m["call"]}']
    for i, fn in enumerate(functions):
        to = _lark_string(" to=functions." + fn["name"])
        rules.append(f'tool{i}: ({to} {channel} | {channel} {to}) format {m["message"]} args{i}')
        rules.append(_arguments_rule(i, fn))
    return Constraint(tokenizer, llg.LLMatcher.grammar_from_lark("\n".join(rules)))


# Where a harmony call opens: its recipient, first in a header (the output's first, or after
# <|start|> and the role, or after <|channel|> and the channel).
_HARMONY_OPENING = r"[ \t]*((assistant|commentary|analysis)[ \t]+)?to=functions\."


def harmony_lazy_call_constraint(tokenizer: Tokenizer, tools: list[dict]) -> Constraint:
    """GPT-OSS's output free (messages on any channel, calls to other recipients such as its
    built-in browser) but for its calls to functions: a header that opens one (`to=functions.`
    in the role or the channel header, as llama.cpp's gpt-oss triggers find it) must go on with an
    offered tool's name, JSON arguments valid against its parameters and <|call|>."""
    functions = _chosen_functions(tools, "required")
    m = _harmony_markers(tokenizer)
    # Free text never holds a control token: the markers that are ones come between its pieces.
    markers = [m[k] for k in ("start", "channel", "message", "constrain", "end") if re.fullmatch(r"<\[\d+\]>", m[k])]
    rules = ["%llguidance {}",
             "start: part* TEXT",
             "part: TEXT (" + " | ".join(markers) + ") | opening call" if markers else "part: opening call",
             f"opening[lazy]: /{_HARMONY_OPENING}/",
             "TEXT: /(.|\\n)*/",
             f'format: (" " {m["constrain"]}? "json")?',
             "call: (" + " | ".join(f"tool{i}" for i in range(len(functions))) + f') {m["call"]}']
    for i, fn in enumerate(functions):
        rules.append(f'tool{i}: {_lark_string(fn["name"])} ({m["channel"]} ("commentary" | "analysis"))? format '
                     f'{m["message"]} args{i}')
        rules.append(_arguments_rule(i, fn))
    return Constraint(tokenizer, llg.LLMatcher.grammar_from_lark("\n".join(rules)))


def harmony_json_constraint(tokenizer: Tokenizer, schema: dict | None) -> Constraint:
    """Output in GPT-OSS's harmony format whose answer is one JSON text matching schema (None or
    {}: any JSON object), from after the prompt's "<|start|>assistant": up to
    MAX_MESSAGES_BEFORE_CALL analysis messages, then the final message
    (`<|channel|>final <|constrain|>json<|message|>`, the constraint optional) holding the JSON, as
    llama.cpp's gpt-oss response-format grammar lays it out."""
    m = _harmony_markers(tokenizer)
    answer = {**bounded_schema(schema or {"type": "object"}), "x-guidance": JSON_OPTIONS}
    rules = ["%llguidance {}",
             f'start: before{{0,{MAX_MESSAGES_BEFORE_CALL}}} {m["channel"]} "final" format {m["message"]} answer',
             *_harmony_messages(m, '"analysis"'),
             f"answer: %json {json.dumps(answer)}"]
    return Constraint(tokenizer, llg.LLMatcher.grammar_from_lark("\n".join(rules)))


def _harmony_messages(m: dict[str, str], channels: str) -> list[str]:
    """Lark rules: `before`, a message on one of channels (a Lark alternative of their names) and
    the next message's start; `format`, the optional content type of the message that follows."""
    return [f'before: {m["channel"]} {channels} {m["message"]} body {m["start"]} "assistant"',
            # A message's text runs to its first <|end|>: where <|end|> is ordinary text (our
            # vocabularies make it so, as it ends no generation), only if the lexeme is lazy.
            f'body: TEXT {m["end"]}' if "<[" in m["end"] else f'body[lazy]: TEXT {m["end"]}',
            "TEXT: /(.|\\n)*/",
            f'format: (" " {m["constrain"]}? "json")?']


def _harmony_markers(tokenizer: Tokenizer) -> dict[str, str]:
    return {name: _lark_text(tokenizer, text) for name, text in
            (("start", harmony.START), ("channel", harmony.CHANNEL), ("message", harmony.MESSAGE),
             ("constrain", harmony.CONSTRAIN), ("end", harmony.END), ("call", harmony.CALL))}


def _function_rules(functions: list[dict], arguments_key: str) -> tuple[list[str], str]:
    """Lark rules fn<i> (one function's call object: its name, then arguments_key with arguments
    valid against its parameters; tail<i> the same from the name on) and the alternative of all fn<i>."""
    rules = []
    for i, fn in enumerate(functions):
        tail = json.dumps(fn["name"], ensure_ascii=False)[1:] + ", " \
            + json.dumps(arguments_key, ensure_ascii=False) + ": "
        rules.append(f"fn{i}: {_lark_string(_CALL_OPENING)} tail{i}")
        rules.append(f"tail{i}: {_lark_string(tail)} args{i} \"}}\"")
        rules.append(_arguments_rule(i, fn))
    return rules, " | ".join(f"fn{i}" for i in range(len(functions)))


def _arguments_rule(i: int, fn: dict) -> str:
    """Lark rule args<i>: JSON arguments valid against function fn's parameters."""
    params = fn.get("parameters") or {"type": "object"}
    if not isinstance(params, dict):
        raise ConstraintError(f"tool {fn['name']!r}: parameters must be a JSON schema object")
    err = grammar_error(llg.LLMatcher.grammar_from_json_schema(params, overrides=JSON_OPTIONS))
    if err:
        raise ConstraintError(f"tool {fn['name']!r}: its parameters schema cannot be enforced: {err}")
    return f"args{i}: %json {json.dumps({**bounded_schema(params), 'x-guidance': JSON_OPTIONS})}"


def _chosen_functions(tools: list[dict], choice) -> list[dict]:
    functions = []
    for t in tools or ():
        fn = t.get("function", t) if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ConstraintError(f"a tool needs a function with a name, got {t!r}")
        functions.append(fn)
    if not functions:
        raise ConstraintError("tool_choice needs at least one tool")
    if choice == "required":
        return functions
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if name is None:
        raise ConstraintError(f"tool_choice {choice!r} constrains nothing: use \"required\" or "
                              "{\"type\": \"function\", \"function\": {\"name\": ...}}")
    named = [fn for fn in functions if fn["name"] == name]
    if not named:
        raise ConstraintError(f"tool_choice names {name!r}, which is not among the tools "
                              f"({', '.join(fn['name'] for fn in functions)})")
    return named[:1]


def _lark_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # JSON's escapes are Lark's


def _lark_text(tokenizer: Tokenizer, text: str) -> str:
    """text as a Lark sequence: control tokens in it (Mistral's [TOOL_CALLS], Llama's
    <|python_tag|>) are matched as those tokens, the rest as literal text."""
    parts, literal = [], ""
    for frag in tokenizer.vocab.partition(text, parse_special=True):
        if isinstance(frag, int) and tokenizer.vocab.attrs[frag] & ATTR_CONTROL:
            if literal:
                parts.append(_lark_string(literal))
                literal = ""
            parts.append(f"<[{frag}]>")
        else:
            literal += tokenizer.token_to_piece(frag, True).decode("utf-8") if isinstance(frag, int) else frag
    if literal:
        parts.append(_lark_string(literal))
    return " ".join(parts)
