"""Matvec through the several-rows kernels (vec_dot_rows) against one row at a time (vec_dot).

A one-row matmul takes the single-row vec_dot; a taller one hands runs of rows to vec_dot_rows,
which must give every row the very same bits, or model outputs would drift from the reference.
"""
import numpy as np
import pytest

from tensorsharp import kernels
from tensorsharp.testing.quants import random_weights

TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "MXFP4"]  # the types with a vec_dot_rows
# 37 rows: two full groups of 16 and a short one of 5, so whole runs and leftover rows.
ROWS = 37


@pytest.mark.parametrize("type_name", TYPES)
def test_rows_match_single_row_bits(isa, type_name, rng):
    if not kernels._kernels.has_dot(kernels._type_id(type_name), isa):
        pytest.skip(f"{type_name} has no kernel on {isa}")
    for n_blocks in range(1, 41):
        cols = 32 * n_blocks
        w = random_weights(type_name, ROWS, cols, rng)
        x = rng.standard_normal((1, cols), dtype=np.float32)
        single = np.concatenate([kernels.matmul(w[r:r + 1], type_name, x, isa=isa) for r in range(ROWS)], axis=1)
        for n_threads in (1, 2):
            y = kernels.matmul(w, type_name, x, n_threads=n_threads, isa=isa)
            assert np.array_equal(y.view(np.uint32), single.view(np.uint32)), (n_blocks, n_threads)
