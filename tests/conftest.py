"""Shared fixtures: the kernel levels this machine runs."""
import pytest

from tensorsharp import kernels


def pytest_generate_tests(metafunc):
    if "isa" in metafunc.fixturenames:
        metafunc.parametrize("isa", kernels.available_isas())


@pytest.fixture
def rng():
    import numpy as np
    return np.random.default_rng(1234)
