"""BERT's WordPiece (GGUF tokenizer.ggml.model "bert"), encoding as llama.cpp's WPM does.

llama.cpp's converter stores the vocabulary in phantom-space form: a word-initial piece starts with
"▁" and a continuation ("##" in BERT's vocab.txt) loses its prefix. Rebuilding BERT's own form
lets the `tokenizers` library's WordPiece do the work: BERT's normaliser (lowercasing and accent
stripping as the file says, llama.cpp's defaults otherwise), a split on whitespace and
punctuation, greedy longest match per word, [UNK] for a word with no match, [CLS] ... [SEP]."""
from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

from tensorsharp.tokenizer.vocab import TokenizerError

PHANTOM = "\u2581"
CONTROL = 3  # llama.cpp token type
# llama.cpp's fallbacks when the file names no special ids (BERT's vocab.txt positions).
DEFAULT_CLS, DEFAULT_SEP, DEFAULT_UNK = 101, 102, 100


class WordPiece:
    """encode/decode for a BERT-family model. Build with WordPiece.from_metadata(gguf_metadata)."""

    def __init__(self, texts: list[str], types: list[int], cls_id: int, sep_id: int, unk_id: int,
                 lowercase: bool, strip_accents: bool):
        self.texts = texts
        for name, tid in (("cls", cls_id), ("sep", sep_id), ("unk", unk_id)):
            if not 0 <= tid < len(texts):
                raise TokenizerError(f"bert vocabulary of {len(texts)} tokens has no {name} token {tid}")
        self.cls_id, self.sep_id, self.unk_id = cls_id, sep_id, unk_id
        self._control = frozenset(i for i, kind in enumerate(types) if kind == CONTROL)
        vocab = {}
        for i, (text, kind) in enumerate(zip(texts, types)):
            word = text if kind == CONTROL else text[1:] if text.startswith(PHANTOM) else "##" + text
            vocab.setdefault(word, i)
        # llama.cpp matches words of any length; the library's default gives up past 100 characters.
        model = models.WordPiece(vocab, unk_token=texts[unk_id], continuing_subword_prefix="##",
                                 max_input_chars_per_word=1 << 30)
        self._plain = Tokenizer(model)
        self._plain.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                            strip_accents=strip_accents, lowercase=lowercase)
        self._plain.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        self._plain.decoder = decoders.WordPiece()
        self._special = Tokenizer.from_str(self._plain.to_str())
        self._special.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                          for t, kind in zip(texts, types) if kind == CONTROL])

    @classmethod
    def from_metadata(cls, md: dict) -> "WordPiece":
        if md.get("tokenizer.ggml.model") != "bert":
            raise TokenizerError(f"tokenizer model {md.get('tokenizer.ggml.model')!r} is not bert")
        texts = [str(t) for t in md["tokenizer.ggml.tokens"]]
        types = [int(t) for t in md.get("tokenizer.ggml.token_type", [1] * len(texts))]
        if len(types) != len(texts):
            raise TokenizerError("tokenizer.ggml.token_type and tokenizer.ggml.tokens differ in length")
        lowercase = bool(md.get("tokenizer.ggml.normalizer.lowercase", True))
        strip = bool(md.get("tokenizer.ggml.normalizer.strip_accents", lowercase))
        # llama.cpp adds the BOS id first, which the converter sets to BERT's [CLS].
        cls_id = md.get("tokenizer.ggml.bos_token_id", md.get("tokenizer.ggml.cls_token_id", DEFAULT_CLS))
        sep_id = md.get("tokenizer.ggml.seperator_token_id", DEFAULT_SEP)
        unk_id = md.get("tokenizer.ggml.unknown_token_id", DEFAULT_UNK)
        return cls(texts, types, int(cls_id), int(sep_id), int(unk_id), lowercase, strip)

    @property
    def vocab_size(self) -> int:
        return len(self.texts)

    @property
    def eog_ids(self) -> frozenset[int]:
        return frozenset()   # an encoder generates nothing

    def token_text(self, tid: int) -> str:
        return self.texts[tid]

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        ids = (self._special if parse_special else self._plain).encode(text, add_special_tokens=False).ids
        return [self.cls_id, *ids, self.sep_id] if add_special else ids

    def decode(self, ids) -> str:
        return self._plain.decode([i for i in ids if i not in self._control])
