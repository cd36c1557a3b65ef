"""Token ids back to text: per-token byte pieces, whole-sequence decode and a streaming decoder.

Both follow llama.cpp's llama_detokenize (remove_special=false): the first token loses one leading
space when the model adds a space prefix, control/unknown tokens render only when asked, and models
with clean_spaces drop the spaces that a BPE tokenizer put before punctuation and contractions.
"""
from __future__ import annotations

import codecs
import re

from tensorsharp.tokenizer.bpe import CHAR_BYTES
from tensorsharp.tokenizer.spm import SPACE
from tensorsharp.tokenizer.vocab import (ATTR_BYTE, ATTR_CONTROL, ATTR_NORMAL, ATTR_UNKNOWN,
                                         ATTR_USER_DEFINED, TokenizerError, Vocab)

_HIDDEN = ATTR_CONTROL | ATTR_UNKNOWN  # not rendered unless special=True


class Pieces:
    """token id -> the bytes it stands for (cached; computed as if special tokens were rendered)."""

    def __init__(self, vocab: Vocab):
        self._vocab = vocab
        self._cache: list[bytes | None] = [None] * len(vocab.texts)

    def get(self, tid: int, special: bool) -> bytes:
        if not 0 <= tid < len(self._cache):
            raise TokenizerError(f"token id {tid} is outside the vocabulary (size {len(self._cache)})")
        if not special and self._vocab.attrs[tid] & _HIDDEN:
            return b""
        piece = self._cache[tid]
        if piece is None:
            piece = self._cache[tid] = self._render(tid)
        return piece

    def _render(self, tid: int) -> bytes:
        v = self._vocab
        attr, text = v.attrs[tid], v.texts[tid]
        if attr & (_HIDDEN | ATTR_USER_DEFINED):
            return text.encode("utf-8")
        if attr & ATTR_NORMAL:
            if v.kind == "spm":
                return text.replace(SPACE, " ").encode("utf-8")
            return _bpe_bytes(text)
        if attr & ATTR_BYTE:  # "<0xXX>"
            try:
                return bytes([int(text[3:5], 16)])
            except ValueError:
                raise TokenizerError(f"byte token {tid} has malformed text {text!r}") from None
        return b""  # unused and undefined tokens have no text


def _bpe_bytes(text: str) -> bytes:
    out = bytearray()
    for c in text:
        b = CHAR_BYTES.get(c)
        if b is not None:
            out.append(b)
        else:  # not a byte-level character: llama.cpp marks it in place
            out += b"[UNK_BYTE_0x" + c.encode("utf-8").hex().encode() + text.encode("utf-8") + b"]"
    return bytes(out)


# llama.cpp's clean_up_tokenization_spaces passes, in its order: " ?" " !" " ." " ," lose the space;
# " ' " becomes "'"; " 's" " 'm" " 're" " 've" lose the space.
_CLEAN = (re.compile(rb" (?=[?!.,])"), re.compile(rb" ' "), re.compile(rb" '(?=[sm]|re|ve)"))
_CLEAN_TO = (b"", b"'", b"'")


def clean_spaces(data: bytes) -> bytes:
    for pattern, repl in zip(_CLEAN, _CLEAN_TO):
        data = pattern.sub(repl, data)
    return data


def _settled(data: bytes) -> int:
    """Length of the prefix of data that clean_spaces can no longer change, whatever follows.

    A rewrite starts at a space and reads at most three bytes after it, and the passes only ever
    delete spaces; so a cut with no space among the three bytes before it splits the text into two
    parts that clean independently (given the same held true at the previous cut)."""
    cut = len(data)
    while cut > 0:
        space = data.rfind(b" ", max(0, cut - 3), cut)
        if space < 0:
            break
        cut = space
    return cut


class StreamDecoder:
    """Feed ids one at a time; the text pieces returned concatenate to decode(ids).

    Bytes of an incomplete UTF-8 character are held back until the character completes, and with
    clean_spaces a space is held until the bytes after it settle. at_start=False continues a text
    that has already begun (e.g. generation after a prompt): no leading space is stripped.
    clean overrides the model's clean_spaces; llama-server streams pieces uncleaned (clean=False).
    shown: control tokens rendered even without special, such as a tool-call marker that a
    vocabulary holds as a control token (Mistral's [TOOL_CALLS]) and an output parser must see.
    """

    def __init__(self, vocab: Vocab, pieces: Pieces, special: bool = False, at_start: bool = True,
                 clean: bool | None = None, shown: frozenset[int] = frozenset()):
        self._pieces = pieces
        self._special = special
        self._shown = shown
        self._strip = at_start and vocab.add_space_prefix
        self._clean = vocab.clean_spaces if clean is None else clean
        self._held = b""
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, tid: int) -> str:
        piece = self._pieces.get(tid, self._special or tid in self._shown)
        if self._strip and piece.startswith(b" "):
            piece = piece[1:]
        self._strip = False
        if not self._clean:
            return self._utf8.decode(piece)
        held = self._held + piece
        cut = _settled(held)
        self._held = held[cut:]
        return self._utf8.decode(clean_spaces(held[:cut])) if cut else ""

    def flush(self) -> str:
        """The rest, once no more ids will come; incomplete characters become U+FFFD."""
        rest = clean_spaces(self._held) if self._clean else b""
        self._held = b""
        return self._utf8.decode(rest, final=True)


def decode(vocab: Vocab, pieces: Pieces, ids, special: bool = False, clean: bool | None = None) -> str:
    out = bytearray()
    strip = vocab.add_space_prefix
    for tid in ids:
        piece = pieces.get(int(tid), special)
        if strip and piece.startswith(b" "):
            piece = piece[1:]
        strip = False
        out += piece
    data = clean_spaces(bytes(out)) if (vocab.clean_spaces if clean is None else clean) else bytes(out)
    return data.decode("utf-8", "replace")
