"""One bad request must never wedge the engine (issue 18, item 1 and 4): sampling values the
sampler cannot take, sent more times than there are KV slots while another stream is in flight.
Each poisoned request gets an answer (a 400 or a normal reply), the stream beside them ends
normally, and afterwards the queue is idle and /health is ok."""
import json

import gevent
import pytest

from tensorsharp.testing.server import ndjson_lines

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tensorsharp.server.app import create_app
    app = create_app("smollm2-135m", n_ctx=512, n_threads=1, parallel=2, cache_slots=1, max_queue=4,
                     max_body=1 << 20, upload_dir=tmp_path_factory.mktemp("uploads"))
    yield app
    app.extensions["tensorsharp"].served.close()


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def openai(**extra):
    return "/v1/chat/completions", {"model": FILE, "max_tokens": 3,
                                    "messages": [{"role": "user", "content": "Hi"}], **extra}


def ollama(**options):
    return "/api/generate", {"model": FILE, "prompt": "Hi", "stream": False,
                             "options": {"num_predict": 3, **options}}


# (route and body, the status it must get): a 400 where the value is meaningless, else an answer
# with the value read as llama-server / Ollama read it (-1: random seed; a window past the
# context: the whole history).
POISON = {
    "openai-seed-1": (openai(seed=-1), 200),
    "openai-seed-2^64": (openai(seed=2 ** 64), 400),
    "openai-top_k-2^63": (openai(top_k=2 ** 63), 200),
    "ollama-repeat_last_n-2^63": (ollama(repeat_last_n=2 ** 63, repeat_penalty=1.1), 200),
    "ollama-repeat_last_n-1e19": (ollama(repeat_last_n=1e19, repeat_penalty=1.1), 200),
    "ollama-seed-2^70": (ollama(seed=2 ** 70), 400),
}


def test_poisoned_requests_past_the_slot_count_leave_the_engine_serving(app, client):
    n_slots = len(app.extensions["tensorsharp"].served.scheduler.slots)
    with gevent.Timeout(120):
        stream = client.post("/api/generate", json={"model": FILE, "prompt": "Count to a thousand: 1, 2, 3,",
                                                    "raw": True, "options": {"num_predict": 30}},
                             buffered=False)
        chunks = stream.iter_encoded()
        first = json.loads(next(chunks))   # the stream is active while the poison goes in
        assert first["done"] is False
        for name, ((route, body), status) in POISON.items():
            for _ in range(n_slots + 1):
                r = client.post(route, json=body)
                assert r.status_code == status, (name, r.get_json())
                if status == 400:
                    err = r.get_json()["error"]
                    assert (err["message"] if isinstance(err, dict) else err)
        rest = ndjson_lines(b"".join(chunks))
        assert rest[-1]["done"] and rest[-1]["done_reason"] == "length" and "error" not in rest[-1]
        assert rest[-1]["eval_count"] == 30
        assert client.get("/health").get_json() == {"status": "ok"}
        status = client.get("/api/queue/status").get_json()
        assert status["active"] == 0 and status["pending"] == 0
        scheduler = app.extensions["tensorsharp"].served.scheduler
        assert not any(slot.busy for slot in scheduler.slots)
        route, body = ollama()
        r = client.post(route, json=body)
        assert r.status_code == 200 and r.get_json()["done"]
