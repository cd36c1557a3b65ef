"""A server whose models keep a q8_0 KV cache (--kv-cache-type, OLLAMA_KV_CACHE_TYPE): it answers,
speculation keeps greedy output unchanged, and /api/ps counts the smaller cache."""
import pytest

from tensorsharp.testing.server import sse_events

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CODE = "def area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n"


@pytest.fixture(scope="module")
def clients(tmp_path_factory):
    from tensorsharp.server.app import create_app
    apps = {(kv, spec): create_app("smollm2-135m", n_ctx=512, n_threads=1, parallel=2, cache_slots=0,
                                   upload_dir=tmp_path_factory.mktemp("uploads"), speculative=spec, kv_cache_type=kv)
            for kv, spec in (("f16", False), ("q8_0", False), ("q8_0", True))}
    yield {key: app.test_client() for key, app in apps.items()}
    for app in apps.values():
        app.extensions["tensorsharp"].served.close()


def chat(client, content, n=40):
    r = client.post("/v1/chat/completions", json={"model": FILE, "messages": [{"role": "user", "content": content}],
                                                  "max_tokens": n, "temperature": 0, "stream": True})
    assert r.status_code == 200
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in sse_events(r.data)[:-1] if c["choices"])


def test_the_models_cache_is_q8_0_and_ps_counts_it(clients):
    caches = {key: c.application.extensions["tensorsharp"].served.scheduler.cache for key, c in clients.items()}
    assert caches[("f16", False)].type == "f16" and caches[("q8_0", False)].type == "q8_0"
    assert caches[("q8_0", False)].nbytes * 32 == caches[("f16", False)].nbytes * 17
    sizes = {key: c.get("/api/ps").get_json()["models"][0]["size"] for key, c in clients.items()}
    saved = caches[("f16", False)].nbytes - caches[("q8_0", False)].nbytes
    assert sizes[("f16", False)] - sizes[("q8_0", False)] == saved


def generate(client, prompt, n=40):
    r = client.post("/api/generate", json={"model": FILE, "prompt": prompt, "raw": True, "stream": False,
                                           "options": {"num_predict": n, "temperature": 0}})
    assert r.status_code == 200
    return r.get_json()["response"]


def test_q8_0_answers_and_speculation_leaves_greedy_output_unchanged(clients):
    # Its quality is the engine tests' matter (test_kv_cache.py: next-token KL against f16).
    assert chat(clients[("q8_0", False)], "What is the capital of France?").strip()
    # The code again and again: prompt lookup's guesses are right most of the time.
    prompt = f"{CODE}\n\n{CODE}\n\n{CODE[:20]}"
    plain = generate(clients[("q8_0", False)], prompt)
    assert generate(clients[("q8_0", True)], prompt) == plain and "def perimeter(w, h):" in plain
    assert clients[("q8_0", True)].application.extensions["tensorsharp"].served.scheduler.accepted > 10
