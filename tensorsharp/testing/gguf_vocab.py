"""A small valid byte-level BPE vocabulary written into a GGUF file (no torch needed)."""
from __future__ import annotations

import gguf

from tensorsharp.tokenizer.bpe import BYTE_CHARS


def write_vocab(w: gguf.GGUFWriter, n_vocab: int, added: dict[str, gguf.TokenType]) -> None:
    """A valid byte-level BPE vocabulary of n_vocab tokens: the 256 bytes, <|endoftext|>, the added
    tokens, then merges of lowercase letters (with and without the leading-space mark), then
    unused fillers."""
    tokens = list(BYTE_CHARS) + ["<|endoftext|>", *added]
    types = [gguf.TokenType.NORMAL] * 256 + [gguf.TokenType.CONTROL, *added.values()]
    if n_vocab < len(tokens):
        raise ValueError(f"a byte-level vocabulary needs at least {len(tokens)} tokens")
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    pairs = [("Ġ", a) for a in letters] + [(a, b) for a in letters for b in letters]
    merges = []
    for a, b in pairs[: n_vocab - len(tokens)]:
        merges.append(f"{a} {b}")
        tokens.append(a + b)
        types.append(gguf.TokenType.NORMAL)
    while len(tokens) < n_vocab:
        tokens.append(f"<|unused_{len(tokens)}|>")
        types.append(gguf.TokenType.UNUSED)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([int(t) for t in types])
    w.add_token_merges(merges)
    w.add_bos_token_id(256)
    w.add_eos_token_id(256)
    w.add_add_bos_token(False)
