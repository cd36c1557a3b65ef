"""Streaming detokenization: fed id by id it equals whole decode, and never splits a UTF-8 character."""
import functools
import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorsharp.tokenizer import Tokenizer


def _tokenizer_tests():
    """The sibling test module (model loading and reference cases live there, once)."""
    name = "tests.test_tokenizer"  # the name pytest's importlib mode gives it, so both share one cache
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_tokenizer.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


T = _tokenizer_tests()


def stream_all(tok: Tokenizer, ids, **kw) -> list[str]:
    s = tok.stream(**kw)
    return [s.feed(i) for i in ids] + [s.flush()]


@pytest.mark.parametrize("case", T.CASES, ids=T._case_id)
@pytest.mark.parametrize("special", [False, True])
def test_stream_equals_decode(case, special):
    tok = T.model_tokenizer(case["model"])
    pieces = stream_all(tok, case["ids"], special=special)
    whole = tok.decode(case["ids"], special=special)
    assert "".join(pieces) == whole
    if "\ufffd" not in whole:  # no piece ever carries half a character
        assert not any("\ufffd" in p for p in pieces)


@pytest.mark.parametrize("gen", T.GENERATIONS, ids=lambda g: f"{g['model'][:6]}-{g['prompt_index']}")
def test_stream_generated_text(gen):
    tok = T.model_tokenizer(gen["model"])
    assert "".join(stream_all(tok, gen["generated_ids"], at_start=False)) == gen["text"]


@pytest.mark.parametrize("name", ["gemma-3-270m-q4_k_m.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                  "qwen2.5-coder-0.5b-instruct.gguf"])
@pytest.mark.parametrize("char", ["\U0010FFFD", "\U0002A6D6", "\U0001FAE9"])  # private use, rare CJK, new emoji
def test_partial_characters_are_held_back(name, char):
    tok = T.model_tokenizer(name)
    ids = tok.encode(char, add_special=False)
    assert len(ids) >= 2, "the character should be split over several tokens"
    assert stream_all(tok, ids) == [""] * (len(ids) - 1) + [char, ""]


def test_flush_replaces_a_dangling_partial_character():
    tok = T.model_tokenizer("gemma-3-270m-q4_k_m.gguf")
    s = tok.stream()
    assert s.feed(tok.token_id("<0xE2>")) == ""
    assert s.flush() == "\ufffd"


def test_control_tokens_render_only_when_asked():
    tok = T.model_tokenizer("qwen2.5-coder-0.5b-instruct.gguf")
    ids = tok.encode("<|im_start|>user\nHi<|im_end|>", parse_special=True)
    assert "".join(stream_all(tok, ids)) == "user\nHi"
    assert "".join(stream_all(tok, ids, special=True)) == "<|im_start|>user\nHi<|im_end|>"
    shown = tok.control_ids(["<|im_start|>", "user", "<|no such token|>"])   # "user" is no control token
    assert shown == {tok.token_id("<|im_start|>")}
    assert "".join(stream_all(tok, ids, shown=shown)) == "<|im_start|>user\nHi"


def test_space_prefix_dropped_only_at_start():
    tok = Tokenizer.from_metadata(T.spm_md([("▁", -1.0), ("▁a", -2.0)]))
    a = tok.token_id("▁a")
    assert "".join(stream_all(tok, [a, a])) == tok.decode([a, a]) == "a a"
    assert "".join(stream_all(tok, [a, a], at_start=False)) == " a a"


_CLEAN_WORDS = [" .", " ,", " ?", " !", " 's", " 'm", " 're", " 've", " 't", " 'll", " ' ", "'", " ", "  ", "a",
                "é", "😀", " '"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_CLEAN_WORDS), max_size=12))
def test_stream_equals_decode_with_clean_spaces(words):
    # gpt-2 cleans tokenization spaces, which looks ahead; the stream must hold back just enough.
    tok = _clean_tokenizer()
    ids = [i for w in words for i in tok.encode(w, add_special=False)]
    assert "".join(stream_all(tok, ids)) == tok.decode(ids)
    assert "".join(stream_all(tok, ids, clean=False)) == tok.decode(ids, clean=False) == "".join(words)


@functools.cache
def _clean_tokenizer() -> Tokenizer:
    return Tokenizer.from_metadata(T.bpe_md(["'s", " 're", " .", "e"]))
