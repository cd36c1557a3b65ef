"""Tokenizer against llama.cpp's token ids for the three real models, plus rules on small built vocabularies."""
import functools
import json
from pathlib import Path

import numpy as np
import pytest

from tensorsharp.testing.models import model_path
from tensorsharp.tokenizer import Tokenizer, TokenizerError
from tensorsharp.tokenizer import pretokenize
from tensorsharp.tokenizer.bpe import BYTE_CHARS

REFDATA = Path(__file__).resolve().parent / "data"


def gguf_metadata(path: Path) -> dict:
    """GGUF key -> value (str, number, bool, list[str] or numpy array) read with the gguf package."""
    from gguf import GGUFReader
    from gguf.constants import GGUFValueType

    md = {}
    for key, field in GGUFReader(path).fields.items():
        if field.types and field.types[0] == GGUFValueType.ARRAY:
            parts = [field.parts[i] for i in field.data]
            md[key] = ([bytes(p).decode("utf-8") for p in parts] if field.types[-1] == GGUFValueType.STRING
                       else np.concatenate(parts) if parts else np.array([]))
        else:
            md[key] = field.contents()
    return md


@functools.cache
def model_tokenizer(file: str) -> Tokenizer:
    return Tokenizer.from_metadata(gguf_metadata(model_path(file)))


def _load(name: str) -> list:
    return json.loads((REFDATA / name).read_text())


CASES = _load("tokenization.json")
GENERATIONS = _load("generation_greedy.json")


def _case_id(c: dict) -> str:
    return f"{c['model'][:6]}-{c['add_special']:d}{c['parse_special']:d}-{c['text'][:24]!r}"


# -- llama.cpp reference ids -------------------------------------------------------------------

@pytest.mark.llama_cpp
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_encode_matches_llama_cpp(case):
    tok = model_tokenizer(case["model"])
    assert tok.encode(case["text"], case["add_special"], case["parse_special"]) == case["ids"]


@pytest.mark.llama_cpp
@pytest.mark.parametrize("case", [c for c in CASES if not c["add_special"]], ids=_case_id)
def test_decode_round_trips(case):
    tok = model_tokenizer(case["model"])
    text = case["text"]
    assert tok.decode(tok.encode(text, add_special=False, parse_special=False)) == text
    # Parsed special tokens come back only when rendered.
    assert tok.decode(tok.encode(text, add_special=False, parse_special=True), special=True) == text


@pytest.mark.llama_cpp
@pytest.mark.parametrize("gen", GENERATIONS, ids=lambda g: f"{g['model'][:6]}-{g['prompt_index']}")
def test_generation_prompts_and_text(gen):
    tok = model_tokenizer(gen["model"])
    assert tok.encode(gen["prompt"], add_special=True) == gen["prompt_ids"]
    assert tok.decode(gen["generated_ids"]) == gen["text"]


@pytest.mark.parametrize("name, eot, eog", [
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "<|im_end|>", ["<|endoftext|>", "<|im_end|>", "<reponame>"]),
    ("gemma-3-270m-q4_k_m.gguf", "<end_of_turn>", ["<eos>", "<end_of_turn>", "</s>"]),
    # Qwen's "</s>" is an ordinary token in the file; llama.cpp makes it control and end-of-generation.
    ("qwen2.5-coder-0.5b-instruct.gguf", "<|im_end|>",
     ["<|endoftext|>", "<|im_end|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "</s>"]),
])
def test_end_of_generation_ids(name, eot, eog):
    tok = model_tokenizer(name)
    assert tok.eot_id == tok.token_id(eot)
    assert tok.eog_ids == {tok.token_id(t) for t in eog}
    assert tok.eos_id in tok.eog_ids
    assert not tok.is_eog(tok.token_id("a"))


def test_model_ids_and_pieces():
    gemma = model_tokenizer("gemma-3-270m-q4_k_m.gguf")
    assert (gemma.vocab_size, gemma.bos_id, gemma.eos_id, gemma.add_bos) == (262144, 2, 1, True)
    assert gemma.token_to_piece(gemma.bos_id) == b""
    assert gemma.token_to_piece(gemma.bos_id, special=True) == b"<bos>"
    assert gemma.token_to_piece(gemma.token_id("▁world")) == b" world"
    assert gemma.token_to_piece(gemma.token_id("<0xE2>")) == b"\xe2"
    qwen = model_tokenizer("qwen2.5-coder-0.5b-instruct.gguf")
    assert qwen.token_to_piece(qwen.token_id("Ġworld")) == b" world"
    with pytest.raises(TokenizerError):
        qwen.token_to_piece(qwen.vocab_size)


# -- pre-tokenizer splits (expected pieces produced by llama.cpp's unicode_regex_split) ----------

@pytest.mark.parametrize("pre, text, pieces", [
    ("gpt-2", "Hello world's  test\n\n  end", ["Hello", " world", "'s", " ", " test", "\n\n ", " end"]),
    ("gpt-2", "x\t\ty  ", ["x", "\t", "\t", "y", "  "]),
    ("gpt-2", "café ½² 😀!!", ["café", " ½²", " 😀!!"]),
    ("smollm", "abc123 4567 def", ["abc", "1", "2", "3", " ", "4", "5", "6", "7", " def"]),
    ("smollm", "  x = 1_000\r\n", [" ", " x", " =", " ", "1", "_", "0", "0", "0", "\r\n"]),
    ("qwen2", "I'M here, it'S 2024!\r\n\r\n  ok",
     ["I", "'M", " here", ",", " it", "'S", " ", "2", "0", "2", "4", "!\r\n\r\n", " ", " ok"]),
    ("qwen2", "你好，世界 العربية \u200d\xa0x", ["你好", "，世界", " العربية", " \u200d", "\xa0x"]),
    ("llama3", "12345678 abc's\n \n\tfoo", ["123", "456", "78", " abc", "'s", "\n \n", "\tfoo"]),
    ("llama3", "  -->  \xa0\u3000", [" ", " -->", "  \xa0\u3000"]),
    ("default", "a+b<=c, 1234567 $5.00",
     ["a", "+", "b", "<=", "c", ",", " ", "123", "456", "7", " ", "$", "5", ".", "00"]),
    ("default", "(x)|[y]~z", ["(", "x", ")|[", "y", "]~", "z"]),
])
def test_split_rules(pre, text, pieces):
    assert pretokenize.rules_for(pre).split(text) == pieces


def test_every_rule_keeps_all_text():
    text = "It's 1234 tabs\t\tand  spaces ¿qué? 你好 😀\r\n\u3000end"
    for pre in pretokenize.supported():
        assert "".join(pretokenize.rules_for(pre).split(text)) == text, pre


# -- rules on small built vocabularies ----------------------------------------------------------

def spm_md(pieces, **extra) -> dict:
    """A SentencePiece vocab: <unk> <s> </s>, 256 byte tokens, then (text, score) pieces."""
    texts = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    scores = [0.0] * len(texts)
    for text, score, *kind in pieces:
        texts.append(text)
        scores.append(score)
        types.append(kind[0] if kind else 1)
    md = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": texts,
          "tokenizer.ggml.scores": np.array(scores, np.float32), "tokenizer.ggml.token_type": types}
    md.update(extra)
    return md


def bpe_md(words, pre="gpt-2", **extra) -> dict:
    """A byte-level BPE vocab: the 256 byte characters, then each word built by merging left to right."""
    texts = list(BYTE_CHARS) + ["<|endoftext|>"]
    types = [1] * 256 + [3]
    merges = []
    for w in words:
        w = "".join(BYTE_CHARS[b] for b in w.encode())
        for i in range(2, len(w) + 1):
            if w[:i] not in texts:
                merges.append(f"{w[:i - 1]} {w[i - 1]}")
                texts.append(w[:i])
                types.append(1)
    md = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": texts,
          "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": merges,
          "tokenizer.ggml.eos_token_id": 256}
    md.update(extra)
    return md


def test_spm_space_prefix_and_special_tokens():
    tok = Tokenizer.from_metadata(spm_md([("▁", -1.0), ("▁H", -2.0), ("▁Hi", -3.0), ("<x>", 0.0, 3),
                                          ("[u]", 0.0, 4)]))
    hi = tok.token_id("▁Hi")
    assert tok.encode("Hi") == [1, hi]                       # BOS, and the space prefix
    assert tok.encode("Hi<x>Hi", parse_special=True) == [1, hi, tok.token_id("<x>"), hi]
    # Unparsed, "<x>" is text: no prefix after it, and '<' 'x' '>' fall back to bytes.
    assert tok.encode("<x>", add_special=False)[0] == tok.token_id("▁")
    assert tok.encode("[u]", add_special=False, parse_special=False) == [tok.token_id("[u]")]
    # The prefix space is dropped again only from a first token; after BOS llama.cpp keeps it.
    assert tok.decode(tok.encode("Hi Hi", add_special=False)) == "Hi Hi"
    assert tok.decode(tok.encode("Hi Hi")) == " Hi Hi"


def test_spm_merges_by_score_then_leftmost():
    # "aaa": both pairs score the same, so the left pair merges first.
    tok = Tokenizer.from_metadata(spm_md([("a", -1.0), ("aa", -2.0)], **{
        "tokenizer.ggml.add_space_prefix": False}))
    assert tok.encode("aaa", add_special=False) == [tok.token_id("aa"), tok.token_id("a")]
    # A better-scored pair wins even to the right: "ab" + "c" loses to "a" + "bc".
    tok = Tokenizer.from_metadata(spm_md([("a", -1.0), ("b", -1.0), ("c", -1.0), ("ab", -5.0), ("bc", -2.0)],
                                         **{"tokenizer.ggml.add_space_prefix": False}))
    assert tok.encode("abc", add_special=False) == [tok.token_id("a"), tok.token_id("bc")]


def test_spm_byte_fallback():
    tok = Tokenizer.from_metadata(spm_md([("▁", -1.0)], **{"tokenizer.ggml.add_bos_token": False}))
    ids = tok.encode("é")
    assert ids == [tok.token_id("▁"), tok.token_id("<0xC3>"), tok.token_id("<0xA9>")]
    assert tok.decode(ids) == "é"


def test_bpe_merges_and_clean_spaces():
    tok = Tokenizer.from_metadata(bpe_md(["Hello", " world", " ."]))
    ids = tok.encode("Hello world .")
    assert ids == [tok.token_id("Hello"), tok.token_id("Ġworld"), tok.token_id("Ġ.")]
    # gpt-2 cleans tokenization spaces on decode, as llama.cpp does; smollm does not.
    assert tok.decode(ids) == "Hello world."
    assert tok.decode(tok.encode("it 's a ' b")) == "it's a'b"
    assert tok.decode(ids, clean=False) == "Hello world ."   # as llama-server's token pieces
    raw = Tokenizer.from_metadata(bpe_md(["Hello"], pre="smollm"))
    assert raw.decode(raw.encode("Hello .")) == "Hello ."


def test_bpe_special_tokens_need_parse_special():
    tok = Tokenizer.from_metadata(bpe_md(["ab"]))
    eot = tok.token_id("<|endoftext|>")
    assert tok.encode("ab<|endoftext|>", parse_special=True) == [tok.token_id("ab"), eot]
    assert eot not in tok.encode("ab<|endoftext|>")
    assert tok.eog_ids == {eot}
    assert tok.decode([eot]) == "" and tok.decode([eot], special=True) == "<|endoftext|>"


@pytest.mark.parametrize("controls, eog", [
    (["<|end|>"], ["<|end|>"]),
    # Harmony: <|end|> closes the reasoning message, the reply goes on to its answer.
    (["<|start|>", "<|end|>", "<|return|>", "<|call|>"], ["<|return|>", "<|call|>"]),
])
def test_harmony_end_is_not_end_of_generation(controls, eog):
    md = bpe_md(["ab"])
    md["tokenizer.ggml.tokens"] = md["tokenizer.ggml.tokens"] + controls
    md["tokenizer.ggml.token_type"] = md["tokenizer.ggml.token_type"] + [3] * len(controls)
    tok = Tokenizer.from_metadata(md)
    assert tok.eog_ids == {tok.token_id(t) for t in eog + ["<|endoftext|>"]}
    end = tok.token_id("<|end|>")
    assert tok.decode([end]) == ("<|end|>" if "<|return|>" in controls else "")


def test_phi3_special_tokens_strip_following_space():
    md = spm_md([("▁", -1.0), ("<|user|>", 0.0, 3), ("▁a", -2.0)], **{"general.name": "Phi-3 mini"})
    tok = Tokenizer.from_metadata(md)
    assert tok.encode("<|user|>  a", add_special=False, parse_special=True) == [
        tok.token_id("<|user|>"), tok.token_id("▁a")]


@pytest.mark.parametrize("md, message", [
    (bpe_md([], pre="no-such-pre"), "unknown pre-tokenizer type 'no-such-pre'"),
    ({"tokenizer.ggml.model": "t5", "tokenizer.ggml.tokens": ["a"]}, "unsupported tokenizer model 't5'"),
    (bpe_md([], **{"tokenizer.ggml.merges": None}), "merges is missing"),
    (spm_md([], **{"tokenizer.ggml.tokens": ["a", "a"], "tokenizer.ggml.scores": [0.0, 0.0],
                   "tokenizer.ggml.token_type": [1, 1]}), "duplicate token"),
    (spm_md([], **{"tokenizer.ggml.bos_token_id": 99999, "tokenizer.ggml.tokens": ["a"],
                   "tokenizer.ggml.scores": [0.0], "tokenizer.ggml.token_type": [1]}), "no BOS token"),
])
def test_bad_metadata_is_reported(md, message):
    md = {k: v for k, v in md.items() if v is not None}
    with pytest.raises(TokenizerError, match=message):
        Tokenizer.from_metadata(md)
