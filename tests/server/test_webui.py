"""Web UI dialect (DESIGN.md section 4) through the Flask test client: SSE chat, sessions, uploads."""
import io

from tensorsharp.testing.server import sse_events


def ask(client, content="What is 2+3?", **kw):
    r = client.post("/api/chat", json={"messages": [{"role": "user", "content": content}], "maxTokens": 12, **kw})
    return r, sse_events(r.data) if r.status_code == 200 else r.get_json()


def test_chat_frames(client):
    r, events = ask(client)
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    assert set(events[0]) == {"sessionId"}
    tokens = [e["token"] for e in events if "token" in e]
    assert "5" in "".join(tokens)
    done = events[-1]
    assert done["done"] is True and done["finishReason"] == "stop"
    assert {"tokenCount", "elapsed", "tokPerSec", "promptTokens", "kvReusedTokens", "kvReusePercent"} <= set(done)
    assert done["tokenCount"] >= len(tokens) and done["elapsed"] > 0


def test_session_second_turn_reuses_the_cache(client):
    sid = client.post("/api/sessions").get_json()["sessionId"]
    _, first = ask(client, "What is the capital of France?", sessionId=sid)
    assert first[0] == {"sessionId": sid}
    _, second = ask(client, "And of Italy?", sessionId=sid)
    done = second[-1]
    assert done["kvReusedTokens"] > first[-1]["promptTokens"]
    assert done["kvReusePercent"] == round(100 * done["kvReusedTokens"] / done["promptTokens"], 1)


def test_session_accepts_the_whole_conversation_too(client, app):
    served = app.extensions["tensorsharp"].served
    sid = client.post("/api/sessions").get_json()["sessionId"]
    _, first = ask(client, "What is the capital of France?", sessionId=sid)
    answer = "".join(e.get("token", "") for e in first)
    whole = [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": answer},
             {"role": "user", "content": "And of Italy?"}]
    r = client.post("/api/chat", json={"messages": whole, "maxTokens": 12, "sessionId": sid})
    assert sse_events(r.data)[-1]["promptTokens"] == len(served.tokenize_prompt(served.render(whole)))


def test_new_chat_forgets_history(client):
    sid = client.post("/api/sessions").get_json()["sessionId"]
    _, first = ask(client, "Hi", sessionId=sid)
    _, again = ask(client, "Hi", sessionId=sid, newChat=True)
    assert again[-1]["promptTokens"] == first[-1]["promptTokens"]


def test_system_prompt_and_sampling_fields(client):
    r, events = ask(client, "Hi", systemPrompt="You are a pirate.", temperature=0.7, topP=0.9, topK=20,
                    think=False, tools=[])
    assert r.status_code == 200 and events[-1]["done"]


def test_unknown_and_deleted_sessions(client):
    r, body = ask(client, sessionId="nope")
    assert r.status_code == 404 and "unknown session" in body["error"]
    sid = client.post("/api/sessions").get_json()["sessionId"]
    assert client.delete(f"/api/sessions/{sid}").get_json() == {"deleted": True}
    assert client.delete(f"/api/sessions/{sid}").status_code == 404
    assert ask(client, sessionId=sid)[0].status_code == 404


def test_bad_bodies(client):
    assert client.post("/api/chat", json={"messages": []}).status_code == 400
    r = client.post("/api/chat", json={"messages": [{"role": "user", "content": "x"}], "maxTokens": -1})
    assert r.status_code == 400 and "'maxTokens'" in r.get_json()["error"]


def test_models_and_queue_status(client):
    body = client.get("/api/models").get_json()
    m = next(m for m in body["models"] if m["name"] == body["loaded"])
    assert m["isLoaded"] and m["architecture"] == "llama" and m["contextLength"] == 512
    assert m["supportsImages"] is False and m["quantization"] == "Q4_1"
    status = client.get("/api/queue/status").get_json()
    assert status == {"busy": False, "pending_requests": 0, "total_processed": status["total_processed"],
                      "pending": 0, "active": 0, "parallel": 2, "capacity": 4}
    ask(client)
    after = client.get("/api/queue/status").get_json()
    assert after["total_processed"] == status["total_processed"] + 1 and after["busy"] is False
    assert client.get("/health").get_json() == {"status": "ok"}


def test_upload(client, app):
    data = {"file": (io.BytesIO(b"\x89PNG fake image"), "../../etc/photo.png")}
    r = client.post("/api/upload", data=data, content_type="multipart/form-data")
    up = r.get_json()
    assert r.status_code == 200 and up["name"] == "photo.png" and up["size"] == 15 and up["mimeType"] == "image/png"
    stored = app.extensions["tensorsharp"].uploads.get(up["id"])
    assert stored.path.parent == app.extensions["tensorsharp"].uploads.root and stored.path.name == up["id"]
    assert stored.path.read_bytes() == b"\x89PNG fake image"
    # Attaching the image to a chat: the text-only model refuses it.
    msgs = [{"role": "user", "content": "What is this?", "images": [up["id"]]}]
    r = client.post("/api/chat", json={"messages": msgs})
    assert r.status_code == 400 and "does not support images" in r.get_json()["error"]
    assert client.post("/api/upload", data={}, content_type="multipart/form-data").status_code == 400
    big = {"file": (io.BytesIO(b"x" * (2 << 20)), "big.bin")}
    r = client.post("/api/upload", data=big, content_type="multipart/form-data")
    assert r.status_code == 413 and "limit" in r.get_json()["error"]


def test_web_page_when_installed(client, app):
    root = app.extensions["tensorsharp"].web_root
    r = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})   # as browsers ask
    if root is None:
        assert r.status_code == 404 and "web UI" in r.get_json()["error"]
    else:
        assert r.status_code == 200 and r.data == (root / "index.html").read_bytes()
