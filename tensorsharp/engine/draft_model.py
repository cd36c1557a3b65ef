"""Drafting with a small model that shares the target's vocabulary (--draft-model): each
sequence's next tokens guessed greedily by it, for the scheduler to verify in the target's step
as it verifies prompt-lookup guesses (engine/draft.py).

The draft has its own KV cache with one slot per target slot, so a slot's prefix is reused by
the draft as by the target. Before each guess a sequence's slot catches up on what was accepted
since its last guess, rewound first past the guessed tokens that did not hold; the catch-up rows
of every guessing sequence go in one batch. Then k decode steps, one row per sequence still
guessing in each, propose k tokens. A guess ends early at a token the draft gives less than
p_min of its probability (llama.cpp's rule): that token is likely wrong, and all after it with it.
"""
from __future__ import annotations

import os

import numpy as np

from tensorsharp.config import DEFAULT_DRAFT_MAX
from tensorsharp.engine.batch import Stepper
from tensorsharp.engine.draft import GuessRate
from tensorsharp.engine.kv_cache import KVCache, common_prefix
from tensorsharp.errors import TensorSharpError

P_MIN = 0.75           # llama.cpp's default speculative p_min
# As llama.cpp's speculative decoding checks a pair: vocabularies of the same tokenizer model whose
# sizes differ by at most this (a family's sizes pad the embedding differently, e.g. Qwen2.5 0.5B
# has 151936 tokens and 7B 152064), with the same text for every shared id from FIRST_CHECKED on
# (the first few are special tokens some families spell differently across sizes).
MAX_VOCAB_GAP = 128
FIRST_CHECKED = 5


def check_vocab(target: dict, draft: dict, target_name: str, draft_name: str) -> None:
    """Refuses a draft (GGUF metadata) whose vocabulary is not the target's."""
    def refuse(why: str):
        raise TensorSharpError(f"draft model {draft_name} cannot draft for {target_name}: {why}")
    kind_t, kind_d = target.get("tokenizer.ggml.model"), draft.get("tokenizer.ggml.model")
    if kind_t != kind_d:
        refuse(f"their tokenizers differ ({kind_d} and {kind_t})")
    tokens_t, tokens_d = target.get("tokenizer.ggml.tokens") or [], draft.get("tokenizer.ggml.tokens") or []
    if abs(len(tokens_t) - len(tokens_d)) > MAX_VOCAB_GAP:
        refuse(f"their vocabularies hold {len(tokens_d)} and {len(tokens_t)} tokens")
    for i in range(FIRST_CHECKED, min(len(tokens_t), len(tokens_d))):
        if tokens_t[i] != tokens_d[i]:
            refuse(f"token {i} is {tokens_d[i]!r} in the draft and {tokens_t[i]!r} in the target")


class DraftModel:
    """The draft model of one scheduler: its weights, its cache and what each slot holds."""

    def __init__(self, transformer, n_ctx: int, n_seq: int, n_vocab: int, n_batch: int = 512,
                 n_threads: int = 0, draft_max: int = DEFAULT_DRAFT_MAX, p_min: float = P_MIN):
        if draft_max < 1:
            raise ValueError("draft_max must be at least 1")
        transformer.use_context(n_ctx)
        self.transformer = transformer
        self.cache = KVCache(transformer, n_ctx, n_seq)
        self.stepper = Stepper(transformer, self.cache, n_batch=n_batch, n_threads=n_threads)
        self.n_vocab = n_vocab          # the target's: a token past it can never be accepted
        self.draft_max = draft_max
        self.p_min = p_min
        self.held: list[list[int]] = [[] for _ in range(n_seq)]   # tokens at positions [0, length) per slot
        self.proposed = 0   # tokens guessed, engine thread's count
        self.accepted = 0   # of which held

    @property
    def nbytes(self) -> int:
        """Its file (mapped, every page read once it has run) and its KV cache."""
        return os.path.getsize(self.transformer.gguf.path) + self.cache.nbytes

    def follow(self, prompt: list[int]) -> "Follower":
        return Follower(self, prompt)

    def propose(self, asks: list[tuple["Follower", int, int]]) -> list[list[int]]:
        """For each (follower, slot, limit), up to limit tokens guessed to follow its context."""
        drafts: list[list[int]] = [[] for _ in asks]
        try:
            live = self._catch_up(asks, drafts)
            while live:
                tokens, pos, seq = [], [], []
                for i in live:
                    f, slot, _ = asks[i]
                    pos.append(self.cache.reserve(slot, 1))
                    tokens.append(drafts[i][-1])
                    seq.append(slot)
                    self.held[slot].append(drafts[i][-1])
                logits = self.stepper.step(tokens, pos, seq, list(range(len(live))))
                live = self._extend(live, logits, asks, drafts)
        except Exception:
            for f, slot, _ in asks:   # a step that failed may have written part of these slots
                self.cache.truncate(slot, 0)
                self.held[slot].clear()
                f.synced = 0
            raise
        return drafts

    def _catch_up(self, asks, drafts) -> list[int]:
        """Rewinds each asking slot to what it shares with its sequence's context and evaluates
        the rest (the last token always, for its logits), in batches of the stepper's size;
        returns the asks whose first drafted token leaves room for more."""
        rows, ends = [], []   # (token, pos, slot) of every catch-up row; each ask's last row
        for f, slot, _ in asks:
            held, ctx = self.held[slot], f.ctx
            keep = min(f.synced + common_prefix(held[f.synced:], ctx[f.synced:]), len(ctx) - 1)
            del held[keep:]
            self.cache.truncate(slot, keep)
            start = self.cache.reserve(slot, len(ctx) - keep)
            rows += [(t, start + j, slot) for j, t in enumerate(ctx[keep:])]
            held += ctx[keep:]
            f.synced = len(ctx)
            ends.append(len(rows) - 1)
        firsts = []
        for a in range(0, len(rows), self.stepper.n_batch):
            chunk = rows[a:a + self.stepper.n_batch]
            out = [e - a for e in ends if a <= e < a + len(chunk)]
            tokens, pos, seq = zip(*chunk)
            if out:
                firsts.append(self.stepper.step(tokens, pos, seq, out))
            else:
                self.stepper.step(tokens, pos, seq, [])
        return self._extend(list(range(len(asks))), np.concatenate(firsts), asks, drafts)

    def _extend(self, live: list[int], logits: np.ndarray, asks, drafts) -> list[int]:
        """Appends each live ask's greedy token unless the draft doubts it; returns those that
        want more."""
        best = logits.argmax(axis=1)
        top = logits[np.arange(len(live)), best]
        # The best token's probability: 1 / sum(exp(logit - best logit)).
        p = 1.0 / np.exp(logits - top[:, None]).sum(axis=1)
        going = []
        for row, i in enumerate(live):
            tok = int(best[row])
            if p[row] < self.p_min or tok >= self.n_vocab:
                continue
            drafts[i].append(tok)
            if len(drafts[i]) < asks[i][2]:
                going.append(i)
        return going


class Follower(GuessRate):
    """The draft's view of one sequence: its context (the prompt, then each token as it is
    sampled) and the rate at which its guesses held, which the scheduler's budget weighs."""

    def __init__(self, model: DraftModel, prompt: list[int]):
        super().__init__()
        self.model = model
        self.ctx = list(prompt)
        self.synced = 0   # leading tokens of ctx its slot held at its last guess

    def append(self, token: int) -> None:
        self.ctx.append(token)
