"""schemathesis against the server's own OpenAPI document (issue 18): bodies generated from every
route's schema, and the negative ones that break it, never get a 5xx. The context is small so any
generation ends quickly."""
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from tensorsharp.server.app import create_app  # noqa: E402
from tensorsharp.server.model import ServedModel  # noqa: E402

_served = None


def _app():
    global _served
    _served = ServedModel.load("smollm2-135m", n_ctx=48, n_threads=1, parallel=2, cache_slots=1, max_queue=16)
    return create_app(_served, max_body=1 << 20)


schema = schemathesis.openapi.from_wsgi("/openapi.json", _app())
schema.config.generation.update(modes=list(schemathesis.GenerationMode))   # valid bodies and broken ones


@pytest.fixture(scope="module", autouse=True)
def _close_model():
    yield
    _served.close()


@schema.parametrize()
# A fixed seed: the search is the same on every run, so a run fails only for what the tree changed.
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_route_answers_5xx(case):
    case.call_and_validate(checks=[not_a_server_error], timeout=60)
