"""The token table read from GGUF metadata: texts, scores, attributes, special ids, end-of-generation set."""
from __future__ import annotations

import numpy as np

from tensorsharp.errors import TensorSharpError
from tensorsharp.tokenizer import pretokenize


class TokenizerError(TensorSharpError):
    """Tokenizer metadata is missing, inconsistent or of a kind we do not support."""


# Token attributes, bit flags as llama.cpp keeps them (a token can gain CONTROL on top of its type).
ATTR_UNDEFINED = 0
ATTR_UNKNOWN = 1 << 0
ATTR_UNUSED = 1 << 1
ATTR_NORMAL = 1 << 2
ATTR_CONTROL = 1 << 3
ATTR_USER_DEFINED = 1 << 4
ATTR_BYTE = 1 << 5
ATTR_LSTRIP = 1 << 7
ATTR_RSTRIP = 1 << 8

# tokenizer.ggml.token_type values -> attributes; anything else is UNDEFINED.
_TYPE_ATTR = {1: ATTR_NORMAL, 2: ATTR_UNKNOWN, 3: ATTR_CONTROL, 4: ATTR_USER_DEFINED,
              5: ATTR_UNUSED, 6: ATTR_BYTE}

# Converters do not always store these ids, so llama.cpp finds them by text; the first text
# present wins (llama.cpp walks a hash map, so among several candidates its pick is arbitrary).
_DETECT = {
    "eot": ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
            "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"),
    "eom": ("<|eom_id|>",),
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}

# Texts llama.cpp treats as end of generation whatever the metadata says (they also become CONTROL).
_EOG_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
              "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
              "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
              "<｜end▁of▁sentence｜>", "[e~[")

# Special-id metadata keys; the deprecated prefix/suffix/middle keys fill the same fim slots.
_ID_KEYS = (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("eot", "eot_token_id"),
            ("eom", "eom_token_id"), ("unk", "unknown_token_id"), ("sep", "seperator_token_id"),
            ("pad", "padding_token_id"), ("mask", "mask_token_id"),
            ("fim_pre", "fim_pre_token_id"), ("fim_suf", "fim_suf_token_id"),
            ("fim_mid", "fim_mid_token_id"), ("fim_pad", "fim_pad_token_id"),
            ("fim_rep", "fim_rep_token_id"), ("fim_sep", "fim_sep_token_id"),
            ("fim_pre", "prefix_token_id"), ("fim_suf", "suffix_token_id"), ("fim_mid", "middle_token_id"))

_KEY = "tokenizer.ggml."
_PREFIX = 3  # special texts are indexed by this many leading characters (Gemma has 6k "<unused..>")
_C_SPACE = " \t\n\v\f\r"  # C isspace(), which llama.cpp uses to strip around lstrip/rstrip tokens


class Vocab:
    """Everything the encoders and the decoder share; built once per model by from_metadata."""

    kind: str                  # "spm" (tokenizer.ggml.model == "llama") or "bpe" ("gpt2")
    pre: str                   # tokenizer.ggml.pre as given ("default" when absent)
    texts: list[str]           # (n_vocab,) token text as stored
    scores: list[float]        # (n_vocab,) SPM merge priority; 0.0 when the file has none
    attrs: list[int]           # (n_vocab,) ATTR_* flags
    ids: dict[str, int]        # text -> id
    merges: dict[tuple[str, str], int]  # BPE pair -> rank (lower merges first)
    split_rules: pretokenize.SplitRules | None  # BPE only
    special: dict[str, int | None]      # bos, eos, eot, eom, unk, sep, pad, mask, fim_*
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    clean_spaces: bool         # decode drops spaces before punctuation/contractions (some BPE models)
    ignore_merges: bool        # a pre-split word found whole in the vocab is one token (llama3)
    eog_ids: frozenset[int]
    special_order: list[int]   # CONTROL/USER_DEFINED/UNKNOWN ids, longest first: matched whole in text
    _special_by_start: dict[str, list[int]]  # first _PREFIX characters of a special text -> ids
    _special_rank: dict[int, int]            # id -> position in special_order

    @classmethod
    def from_metadata(cls, md: dict) -> "Vocab":
        v = cls()
        model = md.get(_KEY + "model")
        pre = md.get(_KEY + "pre") or "default"
        special = dict.fromkeys(("bos", "eos", "eot", "eom", "unk", "sep", "pad", "mask", "fim_pre",
                                 "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep"))
        if model == "llama":
            v.kind, v.split_rules = "spm", None
            special.update(bos=1, eos=2, unk=0)
            v.add_space_prefix, v.clean_spaces, v.add_bos, v.add_eos, v.ignore_merges = True, False, True, False, False
        elif model == "gpt2":
            v.kind = "bpe"
            special.update(bos=11, eos=11)
            rules = pretokenize.rules_for(pre)
            if rules is None:
                raise TokenizerError(f"unknown pre-tokenizer type {pre!r} (tokenizer.ggml.pre); "
                                     f"supported: {', '.join(pretokenize.supported())}")
            v.split_rules = rules
            v.add_space_prefix, v.add_eos = False, False
            v.clean_spaces, v.ignore_merges, v.add_bos = rules.clean_spaces, rules.ignore_merges, rules.add_bos
            if rules.no_bos:
                special["bos"] = None
        else:
            raise TokenizerError(f"unsupported tokenizer model {model!r} (tokenizer.ggml.model); "
                                 "supported: 'llama' (SentencePiece), 'gpt2' (byte-level BPE)")
        v.pre = pre
        v.add_space_prefix = bool(md.get(_KEY + "add_space_prefix", v.add_space_prefix))

        v._load_tokens(md)
        v.merges = _merge_ranks(md, v.texts, v.ids) if v.kind == "bpe" else {}
        n = len(v.texts)
        for name in special:  # built-in defaults that do not fit this vocab are dropped
            if special[name] is not None and not 0 <= special[name] < n:
                special[name] = None
        for name, key in _ID_KEYS:
            if _KEY + key in md and 0 <= int(md[_KEY + key]) < n:
                special[name] = int(md[_KEY + key])
        v.add_bos = bool(md.get(_KEY + "add_bos_token", v.add_bos))
        v.add_eos = bool(md.get(_KEY + "add_eos_token", v.add_eos))
        if v.add_bos and special["bos"] is None:
            raise TokenizerError("tokenizer.ggml.add_bos_token is true, but there is no BOS token")
        if v.add_eos and special["eos"] is None:
            raise TokenizerError("tokenizer.ggml.add_eos_token is true, but there is no EOS token")
        v.special = special
        v._detect_specials()
        v._phi3_strip(str(md.get("general.name", "")).lower())
        v.special_order = sorted(
            (i for i, a in enumerate(v.attrs) if a & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)),
            key=lambda i: (-len(v.texts[i].encode("utf-8")), i))  # llama.cpp compares byte lengths
        v._special_rank = {i: r for r, i in enumerate(v.special_order)}
        v._special_by_start = {}
        for i in v.special_order:
            v._special_by_start.setdefault(v.texts[i][:_PREFIX], []).append(i)
        return v

    def _load_tokens(self, md: dict) -> None:
        texts = md.get(_KEY + "tokens")
        if texts is None or len(texts) == 0:
            raise TokenizerError("tokenizer.ggml.tokens is missing")
        n = len(texts)
        scores = md.get(_KEY + "scores")
        types = md.get(_KEY + "token_type")
        if scores is not None and len(scores) < n:
            raise TokenizerError(f"tokenizer.ggml.scores has {len(scores)} entries for {n} tokens")
        if types is not None and len(types) < n:
            raise TokenizerError(f"tokenizer.ggml.token_type has {len(types)} entries for {n} tokens")
        self.texts = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(map(str, texts))]
        self.ids = dict(zip(self.texts, range(n)))
        if len(self.ids) != n:
            first: dict[str, int] = {}
            for i, t in enumerate(self.texts):
                if first.setdefault(t, i) != i:
                    raise TokenizerError(f"duplicate token in vocabulary: {t!r} has ids {first[t]} and {i}")
        self.scores = np.asarray(scores[:n], np.float64).tolist() if scores is not None else [0.0] * n
        self.attrs = ([_TYPE_ATTR.get(t, ATTR_UNDEFINED) for t in np.asarray(types[:n], np.int64).tolist()]
                      if types is not None else [ATTR_NORMAL] * n)

    def _detect_specials(self) -> None:
        s = self.special
        for name, candidates in _DETECT.items():
            if s[name] is None:
                s[name] = next((self.ids[t] for t in candidates if t in self.ids), None)
                if s[name] is not None:
                    self.attrs[s[name]] |= ATTR_CONTROL
        eog = {s[k] for k in ("fim_pad", "fim_rep", "fim_sep") if s[k] is not None}
        for t in _EOG_TEXTS:
            if t in self.ids:
                eog.add(self.ids[t])
                self.attrs[self.ids[t]] |= ATTR_CONTROL
        eog.update(s[k] for k in ("eos", "eot", "eom") if s[k] is not None)
        # Harmony (GPT-OSS; Solar Open alike): <|end|> closes one message of a reply (the reasoning,
        # before the answer), while <|return|> and <|call|> end generation. llama.cpp takes <|end|>
        # out of the end-of-generation set when both enders exist, and renders it.
        end = self.ids.get("<|end|>")
        enders = (("<|return|>", "<|call|>"), ("<|calls|>", "<|flush|>"))
        if end in eog and any(all(self.ids.get(t) in eog for t in pair) for pair in enders):
            eog.discard(end)
            self.attrs[end] = ATTR_USER_DEFINED
        self.eog_ids = frozenset(eog)

    def _phi3_strip(self, model_name: str) -> None:
        # Phi-3 special tokens swallow the whitespace after them (llama.cpp sets this by model name).
        if "phi-3" not in model_name and "phi3" not in model_name:
            return
        for i, a in enumerate(self.attrs):
            if a & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN):
                self.attrs[i] |= ATTR_RSTRIP
        for t, on in (("</s>", True), ("<unk>", False), ("<s>", False), ("<|endoftext|>", False)):
            if t in self.ids:
                i = self.ids[t]
                self.attrs[i] = self.attrs[i] | ATTR_RSTRIP if on else self.attrs[i] & ~ATTR_RSTRIP

    def partition(self, text: str, parse_special: bool) -> list[str | int]:
        """Split text into raw pieces (str) and special token ids (int), as llama.cpp's
        tokenizer_st_partition: special texts longest first, each taking every leftmost occurrence
        in the raw pieces left so far. Control and unknown tokens count only with parse_special;
        user-defined tokens always do."""
        frags: list[str | int] = [text] if text else []
        for tid in self._special_candidates(text):
            attr = self.attrs[tid]
            if not parse_special and attr & (ATTR_CONTROL | ATTR_UNKNOWN):
                continue
            tok = self.texts[tid]
            out: list[str | int] = []
            for f in frags:
                if isinstance(f, int) or tok not in f:
                    out.append(f)
                    continue
                pos = 0
                while (at := f.find(tok, pos)) >= 0:
                    left = f[pos:at]
                    if attr & ATTR_LSTRIP:
                        left = left.rstrip(_C_SPACE)
                    if left:
                        out.append(left)
                    out.append(tid)
                    pos = at + len(tok)
                    if attr & ATTR_RSTRIP:
                        while pos < len(f) and f[pos] in _C_SPACE:
                            pos += 1
                if pos < len(f):
                    out.append(f[pos:])
            frags = out
        return frags

    def _special_candidates(self, text: str) -> list[int]:
        """Special ids whose text occurs in text, in partition order (a cheap filter for big vocabs)."""
        grams = set(text)
        grams.update(map(str.__add__, text, text[1:]))
        grams.update(text[i:i + _PREFIX] for i in range(len(text) - _PREFIX + 1))
        found = [i for key in grams for i in self._special_by_start.get(key, ())]
        if len(found) > 1:
            rank = self._special_rank
            found.sort(key=rank.__getitem__)
        return [i for i in found if self.texts[i] in text]

    def byte_token(self, b: int) -> int:
        """SPM byte fallback: the <0xXX> token of byte b, else the one-character token."""
        t = self.ids.get(f"<0x{b:02X}>")
        if t is None and b < 0x80:  # a lone byte above 0x7F is no text, so it cannot be a token
            t = self.ids.get(chr(b))
        if t is None:
            raise TokenizerError(f"vocabulary has no token for byte 0x{b:02X}")
        return t


def _merge_ranks(md: dict, texts: list[str], ids: dict[str, int]) -> dict[tuple[str, str], int]:
    merges = md.get(_KEY + "merges")
    if merges is None:
        raise TokenizerError("tokenizer.ggml.merges is missing (needed by a 'gpt2' tokenizer)")

    def held(part: str) -> str:
        # The vocabulary's own string where it has one (a merge's halves are tokens): a fresh
        # slice per half would be a second copy of the vocabulary (25 MB for Qwen2.5's 151k merges).
        i = ids.get(part)
        return texts[i] if i is not None else part
    ranks: dict[tuple[str, str], int] = {}
    for rank, m in enumerate(map(str, merges)):
        # The split is at the first space after the first character, so a merge may start with one.
        cut = m.find(" ", 1)
        pair = (held(m[:cut]), held(m[cut + 1:])) if cut >= 0 else ("", "")
        ranks.setdefault(pair, rank)
    return ranks
