"""The client-library matrix: a live `tensorsharp serve` per chat model for the whole session, the
`quality` fixture that records a model's wrong but well-formed answer without failing, and the
matrix printed at the end of the run (library x feature x model)."""
from pathlib import Path

import pytest

from tensorsharp.testing.clients import MODELS
from tensorsharp.testing.server import running, serve_args

HERE = Path(__file__).parent
MISS = "model_miss"


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.clients)


class Server:
    def __init__(self, base: str, key: str):
        self.base = base
        self.key = key                     # "qwen" / "smollm2", the test id
        self.name = MODELS[key]            # the registry name a user types
        self.model = self.name + ":latest"  # the name the listings give


@pytest.fixture(scope="session", params=sorted(MODELS))
def server(request, tmp_path_factory):
    # One request at a time and a small context: the matrix asks short questions one by one.
    with running(serve_args(MODELS[request.param], "--ctx", "1024", "--parallel", "1"),
                 tmp_path_factory.mktemp(f"clients-{request.param}")) as base:
        yield Server(base, request.param)


@pytest.fixture
def quality(request):
    """quality(ok, what): a miss of the model's (the reply was well formed and parsed, but wrong) is
    recorded on the test's report and shown in the matrix; it does not fail the test."""
    def check(ok: bool, what: str) -> bool:
        if not ok:
            request.node.user_properties.append((MISS, what))
        return ok
    return check


def pytest_terminal_summary(terminalreporter):
    rows = []
    for outcome in ("passed", "failed", "skipped"):
        for rep in terminalreporter.stats.get(outcome, []):
            path = getattr(rep, "location", ("",))[0]
            if not path.replace("\\", "/").startswith("tests/clients/") or rep.when not in ("call", "setup"):
                continue
            if outcome != "skipped" and rep.when != "call":
                continue
            misses = [v for k, v in getattr(rep, "user_properties", []) if k == MISS]
            verdict = {"passed": "model-miss" if misses else "pass", "failed": "FAIL", "skipped": "skip"}[outcome]
            rows.append((rep.nodeid.split("::", 1)[-1], Path(path).stem.removeprefix("test_"), verdict,
                         "; ".join(misses)))
    if rows:
        terminalreporter.section("client matrix (test[model]: verdict)")
        for test, library, verdict, why in sorted(rows, key=lambda r: (r[1], r[0])):
            why = " ".join(why.split())
            terminalreporter.line(f"{library:18} {test:48} {verdict:10} {why[:160]}")
