"""SentencePiece BPE as llama.cpp runs it (tokenizer.ggml.model "llama"): score-ordered bigram merges."""
from __future__ import annotations

from heapq import heapify, heappop, heappush

from tensorsharp.tokenizer.vocab import Vocab

SPACE = "\u2581"  # SentencePiece's visible space


class SpmEncoder:
    """Encodes one fragment whose spaces are already SPACE; special tokens were split off before."""

    def __init__(self, vocab: Vocab):
        self._ids = vocab.ids
        self._scores = vocab.scores
        self._byte_token = vocab.byte_token

    def encode(self, text: str, out: list[int]) -> None:
        n = len(text)
        if n == 0:
            return
        ids, scores = self._ids, self._scores
        sym = list(text)          # one code point each to start; "" once merged into the left
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        # Highest score first, leftmost among equal scores; size tells a stale pair from a live one.
        heap = []
        for i in range(n - 1):
            t = ids.get(text[i:i + 2])
            if t is not None:
                heap.append((-scores[t], i, i + 1, 2))
        heapify(heap)
        while heap:
            _, left, right, size = heappop(heap)
            a, b = sym[left], sym[right]
            if not a or not b or len(a) + len(b) != size:
                continue
            merged = a + b
            sym[left], sym[right] = merged, ""
            after = nxt[right]
            nxt[left] = after
            if after >= 0:
                prv[after] = left
            before = prv[left]
            if before >= 0:
                t = ids.get(sym[before] + merged)
                if t is not None:
                    heappush(heap, (-scores[t], before, left, len(sym[before]) + len(merged)))
            if after >= 0:
                t = ids.get(merged + sym[after])
                if t is not None:
                    heappush(heap, (-scores[t], left, after, len(merged) + len(sym[after])))
        # Every merged symbol is a token (a pair is only queued if its text is one), so only single
        # code points can be missing from the vocab: they fall back to their UTF-8 bytes.
        for s in sym:
            if s:
                t = ids.get(s)
                if t is not None:
                    out.append(t)
                else:
                    out.extend(self._byte_token(b) for b in s.encode("utf-8"))
