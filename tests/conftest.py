"""Shared fixtures (the kernel levels this machine runs) and the guard on llama.cpp comparisons."""
import pytest

from tensorsharp import kernels


def pytest_generate_tests(metafunc):
    if "isa" in metafunc.fixturenames:
        metafunc.parametrize("isa", kernels.available_isas())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A comparison with llama.cpp's reference data (marker llama_cpp) that skips fails instead:
    its data is in tests/data and its models are pulled, so a skip means the run proved nothing
    while looking green."""
    report = (yield).get_result()
    if report.skipped and item.get_closest_marker("llama_cpp") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"a comparison with llama.cpp did not run: {reason}"


@pytest.fixture
def rng():
    import numpy as np
    return np.random.default_rng(1234)
