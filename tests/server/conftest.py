"""Shared fixtures: an app on the real SmolLM2 model per test module, and request bodies."""
import pytest

MODEL = "smollm2-135m"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tensorsharp.server.app import create_app
    app = create_app(MODEL, n_ctx=512, n_threads=1, parallel=2, cache_slots=2, max_queue=4, max_body=1 << 20,
                     upload_dir=tmp_path_factory.mktemp("uploads"))
    yield app
    app.extensions["tensorsharp"].served.close()


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()
