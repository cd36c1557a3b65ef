"""The guess budget: rows go to guesses only while their expected yield beats their cost."""
import numpy as np
import pytest

from tensorsharp.engine import guess_budget
from tensorsharp.engine.draft import PromptLookup
from tensorsharp.engine.guess_budget import StepCosts, allot
from tensorsharp.llm import Model

# SmolLM2's shape at 2 threads: a few rows nearly free, 8 rows about twice one, 16 three times.
STEEP = StepCosts((1, 2, 4, 8, 16), (1.0, 1.05, 1.25, 1.94, 3.0))


def test_curve_interpolates_between_measured_counts():
    assert STEEP(1) == 1.0 and STEEP(8) == 1.94
    assert STEEP(3) == pytest.approx(1.15) and STEEP(12) == pytest.approx(2.47)
    with pytest.raises(ValueError):
        STEEP(17)


def test_a_request_whose_guesses_fail_stops_getting_rows():
    d = PromptLookup([])
    assert allot(1, [d.rate], [4], STEEP, 16) != [0]      # a first guess is tried
    misses = 0
    while allot(1, [d.rate], [4], STEEP, 16) != [0]:
        d.record(0, True)
        misses += 1
    assert 3 <= misses <= 10
    assert allot(1, [d.rate], [10], STEEP, 16) == [0]


def test_a_request_whose_guesses_hold_keeps_them_even_in_a_full_batch():
    # Eight decoding requests: the 8 more rows cost 1.55x, so only guesses that mostly hold pay.
    assert allot(8, [0.95] + [0.0] * 7, [8] + [0] * 7, STEEP, 16) == [8] + [0] * 7
    assert allot(8, [0.3] * 8, [4] * 8, STEEP, 16) == [0] * 8
    assert allot(16, [0.99] * 16, [4] * 16, StepCosts.flat(), 16) == [0] * 16   # no row left


def test_scarce_rows_go_to_the_likeliest_tokens():
    assert allot(2, [0.9, 0.6], [10, 10], StepCosts.flat(), 8) == [5, 1]   # 0.9**5 > 0.6**2
    assert allot(2, [0.9, 0.6], [3, 10], StepCosts.flat(), 16) == [3, 10]  # free rows: every guess


def test_a_measured_curve_rises_from_one_and_leaves_the_slot_empty():
    m = Model("smollm2-135m", n_ctx=64)
    costs = guess_budget.step_costs(m.stepper, 16)
    assert costs.rows == guess_budget.PROBE_ROWS and costs.ratios[0] == 1.0
    assert all(a <= b for a, b in zip(costs.ratios, costs.ratios[1:]))
    assert m.cache.length[0] == 0
    assert guess_budget.step_costs(m.stepper, 8) is costs  # timed once per model and thread count


def test_rows_are_timed_deep_in_a_context_each_in_a_slot_of_its_own():
    # Rows of one sequence at its start would leave out the attention over a real context, and
    # rows sharing one slot read one KV region: either way the curve came out too flat.
    class Cache:
        n_seq, n_ctx = 3, 1024
        length = np.zeros(3, dtype=np.int64)

        def reserve(self, seq, n):
            self.length[seq] += n

        def truncate(self, seq, n):
            self.length[seq] = n

    class Stepper:
        n_threads, cache, seen = 1, Cache(), []

        def __init__(self):
            self.model = self   # what the measured curves are kept by

        def step(self, tokens, pos, seq, rows):
            assert all(self.cache.length[s] > p for s, p in zip(seq, pos))   # each row's position reserved
            self.seen.append((tuple(seq), tuple(pos)))

    stepper = Stepper()
    guess_budget.step_costs(stepper, 4)
    at = guess_budget.CONTEXT
    assert ((0, 1, 2, 0), (at, at, at, at + 1)) in stepper.seen and ((0,), (at,)) in stepper.seen
    assert not stepper.cache.length.any()
