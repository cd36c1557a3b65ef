"""Prompt-lookup drafting: guesses at a sequence's next tokens, copied from its own context.

When a reply repeats its prompt (code edited and given back, a quoted document) or itself, the
tokens that followed the last earlier occurrence of the context's final n-gram are a cheap, often
right guess at what comes next. The scheduler verifies a guess in the sequence's next step, where
the extra rows cost little (the few-token gemm reads each weight once for up to 16 rows), and
reports back how much of it held, which sets how much is guessed next time.
"""
from __future__ import annotations

MAX_NGRAM = 3      # longest suffix looked up; longer matches are rare and add little
MIN_NGRAM = 2      # shortest: single tokens recur everywhere in prose and mostly guess wrong
MAX_DRAFT = 10     # tokens per guess at most
FIRST_DRAFT = 4    # tokens of a sequence's first guess
MISSES = 2         # guesses in a row of which nothing held before drafting pauses
MAX_PAUSE = 64     # steps; a pause doubles from 2 up to this while guesses keep failing


class PromptLookup:
    """The drafter of one sequence. Its context is the prompt, then each token as it is sampled."""

    def __init__(self, prompt):
        self._ctx: list[int] = []
        self._todo = list(prompt)     # indexed on the first proposal, on the engine thread
        self._ends: dict[tuple, int] = {}   # n-gram -> index of its last token, latest occurrence;
                                            # n-grams ending at the context's last token excluded
        self.k = FIRST_DRAFT
        self._misses = 0
        self._pause = 0
        self._next_pause = 2

    def append(self, token: int) -> None:
        if self._todo:
            self._todo.append(token)
            return
        ctx, last = self._ctx, len(self._ctx) - 1
        for n in range(MIN_NGRAM, MAX_NGRAM + 1):
            if last - n + 1 >= 0:
                self._ends[tuple(ctx[last - n + 1:last + 1])] = last
        ctx.append(token)

    def propose(self, limit: int) -> list[int]:
        """Up to min(limit, k) tokens guessed to follow the context (none while paused)."""
        if self._pause:
            self._pause -= 1
            return []
        k = min(limit, self.k)
        if k <= 0:
            return []
        if self._todo:
            todo, self._todo = self._todo, []
            for t in todo:
                self.append(t)
        ctx = self._ctx
        for n in range(MAX_NGRAM, MIN_NGRAM - 1, -1):
            end = self._ends.get(tuple(ctx[-n:])) if len(ctx) > n else None
            if end is not None:
                draft = ctx[end + 1:end + 1 + k]
                return draft[:draft.index(-1)] if -1 in draft else draft   # image rows are no tokens
        return []

    def feedback(self, proposed: int, accepted: int) -> None:
        """How many of the last guess's tokens held: a guess that held whole grows the next one,
        else the next is one past what held; guesses that keep failing pause drafting for longer
        and longer (each one costs its rows in the step)."""
        if proposed == 0:
            return
        self.k = min(MAX_DRAFT, self.k + 2) if accepted == proposed else max(1, accepted + 1)
        if accepted:
            self._misses, self._next_pause = 0, 2
            return
        self._misses += 1
        if self._misses >= MISSES:
            self._pause, self._misses = self._next_pause, 0
            self._next_pause = min(MAX_PAUSE, 2 * self._next_pause)
