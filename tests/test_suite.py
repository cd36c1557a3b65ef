"""The test suite itself: it needs nothing outside the repository and the model store, and a
comparison with llama.cpp that skips fails the run."""
import re
from pathlib import Path

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent
# Where tests once looked for models and reference data on one machine instead of the store and
# tests/data: the user's home, a cache path, a sibling checkout, an absolute /work path.
OUTSIDE = re.compile(r"Path\.home\(\)|expanduser|~/\.cache|\.cache\"|\"shared\"|shared/refdata|[\"']/work/")


def test_tests_read_nothing_outside_the_repository_and_the_store():
    offenders = [f"{p.relative_to(TESTS)}:{i}: {line.strip()}"
                 for p in sorted(TESTS.rglob("*.py")) if p != Path(__file__).resolve()
                 for i, line in enumerate(p.read_text().splitlines(), start=1) if OUTSIDE.search(line)]
    assert not offenders, "\n".join(offenders)


def test_reference_data_is_in_the_repository():
    names = {p.name for p in (TESTS / "data").iterdir()}
    assert {"README.md", "manifest.json", "tokenization.json", "generation_greedy.json",
            "chat_templates.json", "chat_template_sources.json"} <= names


def test_a_skipped_llama_cpp_comparison_fails_the_run(pytester):
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    llama_cpp: compares with llama.cpp\n")
    pytester.makepyfile("""
        import pytest

        @pytest.mark.llama_cpp
        def test_comparison():
            pytest.skip("model not found")

        @pytest.mark.llama_cpp
        @pytest.mark.parametrize("case", [])
        def test_no_cases(case):
            pass

        def test_other():
            pytest.skip("no AVX2 here")
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    # A skip at setup (the empty parameter set) is reported as an error, at call as a failure.
    result.assert_outcomes(failed=1, errors=1, skipped=1)
    result.stdout.fnmatch_lines(["*a comparison with llama.cpp did not run: Skipped: model not found*"])
