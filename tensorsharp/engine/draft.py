"""Prompt-lookup drafting: guesses at a sequence's next tokens, copied from its own context.

When a reply repeats its prompt (code edited and given back, a quoted document) or itself, the
tokens that followed the last earlier occurrence of the context's final n-gram are a cheap, often
right guess at what comes next. The scheduler verifies a guess in the sequence's next step, where
the guessed rows cost little, and reports back how much of it held. The rate at which guessed
tokens hold is what engine/guess_budget.py weighs against the rows a guess costs.
"""
from __future__ import annotations

MAX_NGRAM = 3      # longest suffix looked up; longer matches are rare and add little
MIN_NGRAM = 2      # shortest: single tokens recur everywhere in prose and mostly guess wrong
MAX_DRAFT = 10     # tokens per guess at most
FIRST_RATE = 0.5   # a new sequence's rate of guessed tokens that hold: enough for a first try
RATE_WEIGHT = 0.25  # weight of each newly checked token in the rate: the last few dominate, since
                    # a reply copies in runs (a quoted function) between stretches of new text


class GuessRate:
    """How often a sequence's guessed tokens hold, for whatever guesses them."""

    def __init__(self):
        self.rate = FIRST_RATE

    def record(self, held: int, missed: bool) -> None:
        """How the last guess fared: `held` tokens held, then (missed) one did not. A guessed token
        the budget gave no row is still checked against the token sampled in its place, so a
        sequence whose guesses get no rows keeps its rate current and wins rows back when a
        copied stretch starts."""
        for _ in range(held):
            self.rate += RATE_WEIGHT * (1 - self.rate)
        if missed:
            self.rate -= RATE_WEIGHT * self.rate


class PromptLookup(GuessRate):
    """The drafter of one sequence. Its context is the prompt, then each token as it is sampled."""

    def __init__(self, prompt):
        super().__init__()
        self._ctx: list[int] = []
        self._todo = list(prompt)     # indexed on the first proposal, on the engine thread
        self._ends: dict[tuple, int] = {}   # n-gram -> index of its last token, latest occurrence;
                                            # n-grams ending at the context's last token excluded

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
        """Up to min(limit, MAX_DRAFT) tokens guessed to follow the context."""
        k = min(limit, MAX_DRAFT)
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
