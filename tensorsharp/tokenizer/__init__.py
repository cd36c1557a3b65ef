"""Tokenizers built from GGUF metadata, matching llama.cpp: byte-level BPE, SentencePiece, streaming decode."""
from __future__ import annotations

import re
import secrets

from tensorsharp.tokenizer.bpe import BpeEncoder
from tensorsharp.tokenizer.detokenize import Pieces, StreamDecoder, decode
from tensorsharp.tokenizer.spm import SPACE, SpmEncoder
from tensorsharp.tokenizer.vocab import ATTR_CONTROL, ATTR_UNKNOWN, TokenizerError, Vocab

__all__ = ["Tokenizer", "StreamDecoder", "TokenizerError"]


# Stands for a control token's text inside client text (Tokenizer.quote): private-use characters
# and a per-process nonce, so no client text can spell one and no template filter changes it.
_NONCE = secrets.token_hex(4)
_QUOTED = re.compile("\ue000" + _NONCE + "([0-9a-f]+)\ue001")


class Tokenizer:
    """encode/decode for one model. Build with Tokenizer.from_metadata(gguf_metadata)."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self._encoder = SpmEncoder(vocab) if vocab.kind == "spm" else BpeEncoder(vocab)
        self._pieces = Pieces(vocab)
        self._longest: int | None = None   # characters of the longest token text

    @classmethod
    def from_metadata(cls, md: dict) -> "Tokenizer":
        """md maps GGUF keys (tokenizer.ggml.*, general.name) to their values."""
        return cls(Vocab.from_metadata(md))

    # -- ids of note ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocab.texts)

    @property
    def bos_id(self) -> int | None:
        return self.vocab.special["bos"]

    @property
    def eos_id(self) -> int | None:
        return self.vocab.special["eos"]

    @property
    def pad_id(self) -> int | None:
        return self.vocab.special["pad"]

    @property
    def eot_id(self) -> int | None:
        """End of turn (<|im_end|>, <end_of_turn>, ...), from metadata or found by its text."""
        return self.vocab.special["eot"]

    @property
    def eog_ids(self) -> frozenset[int]:
        """Every id that ends generation: EOS, EOT, EOM, FIM pad/repo/sep and llama.cpp's known texts."""
        return self.vocab.eog_ids

    @property
    def add_bos(self) -> bool:
        return self.vocab.add_bos

    @property
    def add_eos(self) -> bool:
        return self.vocab.add_eos

    def is_eog(self, tid: int) -> bool:
        return tid in self.vocab.eog_ids

    def is_control(self, tid: int) -> bool:
        return bool(self.vocab.attrs[tid] & ATTR_CONTROL)

    def token_id(self, text: str) -> int | None:
        """Id of the token whose vocabulary text is exactly text (e.g. "<|im_end|>")."""
        return self.vocab.ids.get(text)

    def control_ids(self, texts) -> frozenset[int]:
        """The control tokens whose text is one of texts."""
        ids = (self.token_id(t) for t in texts)
        return frozenset(t for t in ids if t is not None and self.is_control(t))

    def token_text(self, tid: int) -> str:
        """The token as stored in the vocabulary (byte-level or ▁ form, not decoded)."""
        return self.vocab.texts[tid]

    def token_to_piece(self, tid: int, special: bool = False) -> bytes:
        """Bytes one token decodes to, as llama_token_to_piece (may be part of a UTF-8 character)."""
        return self._pieces.get(tid, special)

    # -- text <-> ids --------------------------------------------------------------------------
    def fewest_tokens(self, n_chars: int) -> int:
        """A lower bound on the tokens of any text of n_chars characters: no token's text covers
        more characters than its own (byte-level and byte-fallback texts are longer than what they
        cover). Lets an oversized prompt be refused without tokenizing it."""
        if self._longest is None:
            self._longest = max(map(len, self.vocab.texts))
        return n_chars // self._longest

    def quote(self, text: str) -> str:
        """Client text to place into a rendered prompt: each control-token text in it ("<|im_start|>"
        typed by a user) becomes a marker that encode() reads back as that text, never as the token,
        so a message cannot forge a turn of another role."""
        v = self.vocab
        for tid in v._special_candidates(text):
            if v.attrs[tid] & (ATTR_CONTROL | ATTR_UNKNOWN):
                text = text.replace(v.texts[tid], f"\ue000{_NONCE}{tid:x}\ue001")
        return text

    def _partition(self, text: str, parse_special: bool) -> list[str | int]:
        """vocab.partition, with quote()'s markers turned back into plain text."""
        if "\ue000" not in text:
            return self.vocab.partition(text, parse_special)
        frags: list[str | int] = []
        pos = 0
        for m in _QUOTED.finditer(text):
            frags += self.vocab.partition(text[pos:m.start()], parse_special)
            tid = int(m.group(1), 16)
            frags.append(self.vocab.texts[tid] if tid < len(self.vocab.texts) else m.group(0))
            pos = m.end()
        frags += self.vocab.partition(text[pos:], parse_special)
        merged: list[str | int] = []   # quoted text joins the plain text around it, as if typed there
        for f in frags:
            if isinstance(f, str) and merged and isinstance(merged[-1], str):
                merged[-1] += f
            else:
                merged.append(f)
        return merged

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """llama_tokenize: add_special adds BOS/EOS as the model asks; parse_special matches
        control-token texts such as "<|im_start|>" as those tokens instead of plain text (except
        in text passed through quote())."""
        v = self.vocab
        text = _valid_unicode(text)
        out: list[int] = []
        if add_special and v.add_bos:
            out.append(v.special["bos"])
        spm = v.kind == "spm"
        after_special = True  # SPM puts the space prefix on text that starts or follows a special token
        for frag in self._partition(text, parse_special):
            if isinstance(frag, int):
                out.append(frag)
                after_special = True
            elif spm:
                if v.add_space_prefix and after_special:
                    frag = " " + frag
                self._encoder.encode(frag.replace(" ", SPACE), out)
                after_special = False
            else:
                self._encoder.encode(frag, out)
        if add_special and v.add_eos:
            out.append(v.special["eos"])
        return out

    def decode(self, ids, special: bool = False, clean: bool | None = None) -> str:
        """llama_detokenize: special=True renders control tokens; clean overrides the model's
        clean_spaces (None keeps it); invalid UTF-8 becomes U+FFFD."""
        return decode(self.vocab, self._pieces, ids, special, clean)

    def stream(self, special: bool = False, at_start: bool = True, clean: bool | None = None,
               shown: frozenset[int] = frozenset()) -> StreamDecoder:
        """A decoder to feed ids one by one (see StreamDecoder); at_start=False after a prompt."""
        return StreamDecoder(self.vocab, self._pieces, special, at_start, clean, shown)


def _valid_unicode(text: str) -> str:
    """Lone surrogates cannot be UTF-8; they become U+FFFD as invalid input does in llama.cpp."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
