"""Byte-level BPE (tokenizer.ggml.model "gpt2"): split by the pre-tokenizer rules, map bytes, merge by rank."""
from __future__ import annotations

from heapq import heapify, heappop, heappush

from tensorsharp.tokenizer.vocab import Vocab


def _byte_chars() -> list[str]:
    """GPT-2's byte -> printable character table: printable Latin-1 stays, the rest moves to U+0100.."""
    kept = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, shifted = [], 0
    for b in range(256):
        if b in kept:
            out.append(chr(b))
        else:
            out.append(chr(256 + shifted))
            shifted += 1
    return out


BYTE_CHARS = _byte_chars()                               # (256,) byte -> character
CHAR_BYTES = {c: b for b, c in enumerate(BYTE_CHARS)}    # character -> byte

_CACHE_LIMIT = 1 << 16  # words kept between calls; prompts repeat most of theirs


class BpeEncoder:
    """Encodes text without special tokens (the caller has split those off)."""

    def __init__(self, vocab: Vocab):
        self._ids = vocab.ids
        self._ranks = vocab.merges
        self._rules = vocab.split_rules
        self._ignore_merges = vocab.ignore_merges
        self._cache: dict[str, tuple[int, ...]] = {}

    def encode(self, text: str, out: list[int]) -> None:
        cache = self._cache
        for word in self._rules.split(text):
            ids = cache.get(word)
            if ids is None:
                ids = self._word(word)
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[word] = ids
            out.extend(ids)

    def _word(self, word: str) -> tuple[int, ...]:
        chars = "".join([BYTE_CHARS[b] for b in word.encode("utf-8")])
        if self._ignore_merges and chars in self._ids:
            return (self._ids[chars],)
        out = []
        for sym in self._merge(chars):
            tid = self._ids.get(sym)
            if tid is not None:
                out.append(tid)
                continue
            # llama.cpp falls back to one token per byte of the symbol's UTF-8 text; only ASCII bytes
            # can be whole tokens, the others are dropped as llama.cpp drops them.
            out.extend(self._ids[chr(b)] for b in sym.encode("utf-8") if b < 0x80 and chr(b) in self._ids)
        return tuple(out)

    def _merge(self, chars: str) -> list[str]:
        """Merge adjacent symbols, lowest rank first and leftmost among equal ranks, until none applies."""
        n = len(chars)
        if n < 2:
            return [chars] if n else []
        ranks = self._ranks
        sym = list(chars)                  # "" once merged into its left neighbour
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        heap = []
        for i in range(n - 1):
            r = ranks.get((sym[i], sym[i + 1]))
            if r is not None:
                heap.append((r, i, i + 1, sym[i] + sym[i + 1]))
        heapify(heap)
        while heap:
            _, left, right, text = heappop(heap)
            a, b = sym[left], sym[right]
            if not a or not b or a + b != text:  # stale: one side changed since the pair was queued
                continue
            sym[left], sym[right] = text, ""
            after = nxt[right]
            nxt[left] = after
            if after >= 0:
                prv[after] = left
                r = ranks.get((text, sym[after]))
                if r is not None:
                    heappush(heap, (r, left, after, text + sym[after]))
            before = prv[left]
            if before >= 0:
                r = ranks.get((sym[before], text))
                if r is not None:
                    heappush(heap, (r, before, left, sym[before] + text))
        return [s for s in sym if s]
