"""Shared by the chat tests: feed a parser whole, one character and one real token at a time."""
import itertools
from dataclasses import dataclass

import pytest

from tensorsharp.chat.output import ContentDelta, ThinkingDelta, ToolCallDelta
from tensorsharp.gguf import GGUFFile
from tensorsharp.testing.models import model_path
from tensorsharp.tokenizer import Tokenizer


@dataclass
class Parsed:
    content: str
    thinking: str
    calls: list  # [(name, arguments text)], ids left out: they are random
    deltas: list


@pytest.fixture(scope="session")
def qwen_tokenizer():
    return Tokenizer.from_metadata(GGUFFile(model_path("qwen2.5-coder-0.5b")).metadata)


def token_pieces(tokenizer, text: str) -> list[str]:
    """text as a model streams it: one settled piece per token (special texts as one token)."""
    decoder = tokenizer.stream(at_start=False)
    pieces = [decoder.feed(t) for t in tokenizer.encode(text, add_special=False, parse_special=True)]
    pieces.append(decoder.flush())
    assert "".join(pieces) == text
    return pieces


def run(parser, chunks) -> Parsed:
    """Feed chunks, finish, and check the deltas keep the streaming contract."""
    deltas = []
    for chunk in chunks:
        deltas += parser.feed(chunk)
    deltas += parser.finish()
    content = "".join(d.text for d in deltas if isinstance(d, ContentDelta))
    thinking = "".join(d.text for d in deltas if isinstance(d, ThinkingDelta))
    calls = []
    for d in deltas:
        if not isinstance(d, ToolCallDelta):
            continue
        if d.index == len(calls):  # a call's first delta names it and gives it an id
            assert d.id.startswith("call_") and d.name
            calls.append([d.name, d.arguments])
        else:
            assert d.index == len(calls) - 1 and d.id is None and d.name is None
            calls[-1][1] += d.arguments
    if hasattr(parser, "tool_calls"):  # an OutputParser keeps the aggregate
        assert (parser.content, parser.thinking) == (content, thinking)
        assert [(c["function"]["name"], c["function"]["arguments"]) for c in parser.tool_calls] == \
            [tuple(c) for c in calls]
        assert all(c["type"] == "function" for c in parser.tool_calls)
    return Parsed(content, thinking, [tuple(c) for c in calls], deltas)


@pytest.fixture
def parse(qwen_tokenizer):
    """parse(make_parser, text, *pieces) -> Parsed, after checking that feeding text whole, one
    character at a time, one Qwen2.5 token at a time (and as each given list of pieces) gives
    the same content, thinking and calls."""
    def parse(make_parser, text: str, *pieces: list[str]) -> Parsed:
        for p in pieces:
            assert "".join(p) == text
        results = [run(make_parser(), chunks)
                   for chunks in ([text], list(text), token_pieces(qwen_tokenizer, text), *pieces)]
        whole = results[0]
        for other in results[1:]:
            assert (other.content, other.thinking, other.calls) == (whole.content, whole.thinking, whole.calls)
        return whole
    return parse


@pytest.fixture(scope="session")
def feed():
    """feed(parser, chunks) -> Parsed, checking the streaming contract of the deltas."""
    return run


@pytest.fixture
def counter_ids():
    """A new_id that counts, for tests that look at ids."""
    count = itertools.count()
    return lambda: f"call_{next(count)}"
