"""Prompt-lookup drafting: what is guessed from a context, and how feedback sizes the guesses."""
from tensorsharp.engine import draft
from tensorsharp.engine.draft import PromptLookup


def test_guess_follows_the_latest_occurrence_of_the_longest_suffix():
    # Suffix (7, 8) occurs at 1-2 (then 9, 10) and at 5-6 (then 3); the latest wins.
    d = PromptLookup([1, 7, 8, 9, 10, 7, 8, 3, 4, 7, 8])
    assert d.propose(10) == [3, 4, 7, 8]
    # A longer suffix beats a later shorter one: (6, 7, 8) only at 0-2.
    d = PromptLookup([6, 7, 8, 1, 2, 5, 7, 8, 3, 6, 7, 8])
    assert d.propose(3) == [1, 2, 5]


def test_sampled_tokens_extend_the_context():
    d = PromptLookup([5, 6, 1, 2, 3])
    assert d.propose(4) == []          # (2, 3) and (1, 2, 3) never occurred before
    for t in (5, 6):
        d.append(t)
    assert d.propose(4) == [1, 2, 3, 5]


def test_no_guess_from_a_single_token_or_across_an_image():
    d = PromptLookup([4, 9, 1, 4])
    assert d.propose(4) == []          # a one-token match guesses wrong too often in prose
    d = PromptLookup([4, 9, 1, -1, -1, 2, 4, 9])
    assert d.propose(6) == [1]


def test_limit_bounds_the_guess():
    d = PromptLookup(list(range(20)) + [0, 1])
    assert d.propose(100) == list(range(2, 2 + draft.MAX_DRAFT))
    assert d.propose(2) == [2, 3]
    assert d.propose(0) == []


def test_rate_follows_the_latest_checked_tokens():
    d = PromptLookup([1, 2, 3])
    assert d.rate == draft.FIRST_RATE
    for _ in range(12):
        d.record(0, True)
    low = d.rate
    assert low < 0.05
    d.record(10, False)                                   # a copied run: the rate recovers at once
    assert d.rate > 0.9
    d.record(2, True)
    assert low < d.rate < 0.9
    rate = d.rate
    d.record(0, False)                                    # nothing checked: no change
    assert d.rate == rate
