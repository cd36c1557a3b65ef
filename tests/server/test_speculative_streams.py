"""Every dialect's stream is the same with and without speculative decoding: a step that yields
several tokens still sends each as its own chunk, and the text after a stop string never goes out."""
import pytest

from tensorsharp.testing.server import ndjson_lines, sse_events

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CODE = "def area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n"
ASK = [{"role": "user", "content": f"Repeat this code exactly:\n\n{CODE}"}]


@pytest.fixture(scope="module")
def clients(tmp_path_factory):
    from tensorsharp.server.app import create_app
    apps = {spec: create_app("smollm2-135m", n_ctx=512, n_threads=1, parallel=1, cache_slots=0,
                             upload_dir=tmp_path_factory.mktemp("uploads"), speculative=spec)
            for spec in (False, True)}
    yield {spec: app.test_client() for spec, app in apps.items()}
    for app in apps.values():
        app.extensions["tensorsharp"].served.close()


def openai_stream(client, **kw):
    r = client.post("/v1/chat/completions", json={"model": FILE, "messages": ASK, "max_tokens": 40, "stream": True,
                                                  "stream_options": {"include_usage": True}, **kw})
    chunks = sse_events(r.data)[:-1]
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    return deltas, chunks[-1]["usage"]["completion_tokens"]


def test_openai_streams_match(clients):
    plain, n = openai_stream(clients[False])
    guessed, n_guessed = openai_stream(clients[True])
    assert guessed == plain and n_guessed == n == 40
    stopped, _ = openai_stream(clients[True], stop=["perimeter"])
    assert stopped == openai_stream(clients[False], stop=["perimeter"])[0]
    assert "perimeter" not in "".join(d or "" for d in stopped) and "return w * h" in "".join(d or "" for d in stopped)
    served = clients[True].application.extensions["tensorsharp"].served
    assert served.scheduler.accepted > 10


def test_ollama_streams_match(clients):
    body = {"model": FILE, "messages": ASK, "stream": True, "options": {"num_predict": 32, "temperature": 0}}
    lines = {spec: ndjson_lines(c.post("/api/chat", json=body).data) for spec, c in clients.items()}
    pieces = {spec: [(x["message"]["content"], x["done"]) for x in ls] for spec, ls in lines.items()}
    assert pieces[True] == pieces[False]
    assert lines[True][-1]["eval_count"] == lines[False][-1]["eval_count"] == 32


def test_webui_streams_match(clients):
    body = {"messages": ASK, "maxTokens": 32}
    events = {spec: sse_events(c.post("/api/chat", json=body).data) for spec, c in clients.items()}
    tokens = {spec: [e["token"] for e in ev if "token" in e] for spec, ev in events.items()}
    assert tokens[True] == tokens[False] and len(tokens[True]) > 20
    assert events[True][-1]["tokenCount"] == events[False][-1]["tokenCount"] == 32
