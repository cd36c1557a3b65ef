"""Two SmolLM2 replicas on a local Ray cluster (2 CPUs, 1 thread each) behind one front end served
over real HTTP: the three dialects stream, follow-up turns land where their KV prefix is, a second
front end (`tensorsharp serve --ray ADDRESS`, or a gunicorn worker) joins the same replicas and
leaves them serving when it stops, a replica killed mid-stream fails only its own requests and comes
back, with every replica down the front end answers 503 until they return, and the last front end
to leave ends the replicas."""
import json
import os
import subprocess
import sys
import threading
import time

import pytest

# The test cluster's services listen on loopback only (Ray reads this at import).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
import ollama  # noqa: E402
import openai  # noqa: E402
import requests  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from tensorsharp.testing.server import running, serve_args, sse_events  # noqa: E402

MODEL = "smollm2-135m"
# The front end below loads with these; another front end given the same joins its replicas.
SETTINGS = dict(n_ctx=4096, n_threads=1, parallel=2, cache_slots=2, max_queue=8)
SAME_SETTINGS_ENV = {"TENSORSHARP_MODEL": MODEL, "TENSORSHARP_CTX": "4096", "TENSORSHARP_THREADS": "1",
                     "TENSORSHARP_PARALLEL": "2", "TENSORSHARP_CACHE_SLOTS": "2", "TENSORSHARP_MAX_QUEUE": "8",
                     "TENSORSHARP_REPLICAS": "2"}


def story(k: int) -> list[dict]:
    return [{"role": "user", "content": f"Story {k}. Write a very long story about dragon number {k}."}]


def _serve(app, listener):
    """The app on its own gevent hub in this thread, as `tensorsharp serve` runs it."""
    from tensorsharp.server.run import _Handler
    server = WSGIServer(listener, app, handler_class=_Handler, log=None)
    server.connections = server.responses = 0
    server.max_connections, server.io_timeout = 64, 60
    server.serve_forever()


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    from tensorsharp.server.app import create_app
    from tensorsharp.server.run import listen
    from tensorsharp.cluster.engine import connect
    connect("local", num_cpus=2, log_to_driver=False)
    try:
        app = create_app(MODEL, **SETTINGS, upload_dir=tmp_path_factory.mktemp("uploads"), ray="local", replicas=2)
        listener = listen("127.0.0.1", 0)
        threading.Thread(target=_serve, args=(app, listener), daemon=True).start()
        engine = app.extensions["tensorsharp"].served.scheduler
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", engine
        app.extensions["tensorsharp"].close()
        # The last front end to leave ends the replicas (they are detached: nothing else would).
        wait_for(lambda: not replica_names(), 30, "the replicas ended")
    finally:
        ray.shutdown()


@pytest.fixture
def base(front):
    return front[0]


@pytest.fixture
def engine(front):
    return front[1]


def processed(engine) -> list[int]:
    return [r["processed"] for r in ray.get([a.report.remote() for a in engine.actors])]


def reports(engine) -> list[dict]:
    return ray.get([a.report.remote() for a in engine.actors])


def replica_names() -> list[str]:
    return [n for n in ray.util.list_named_actors() if n.startswith(MODEL)]


def wait_for(predicate, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def test_a_monkey_patched_process_is_refused_rather_than_left_hanging(tmp_path):
    code = ("from gevent import monkey; monkey.patch_all()\n"
            "from tensorsharp.cluster.engine import connect\n"
            "connect('local')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "monkey-patched" in r.stderr


def test_three_dialects_stream_through_the_replicas(base):
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is 2+3?"}], max_tokens=12, temperature=0,
        stream=True) if c.choices]
    assert "5" in "".join(pieces)
    parts = list(ollama.Client(host=base).chat(model=MODEL, messages=[{"role": "user", "content": "Say hi."}],
                                               options={"num_predict": 8}, stream=True))
    assert parts[-1].done and "".join(p.message.content for p in parts).strip()
    body = requests.post(base + "/api/chat", json={"messages": [{"role": "user", "content": "Hi"}],
                                                   "maxTokens": 6, "sessionId": None}).text
    events = sse_events(body)
    assert set(events[0]) == {"sessionId"} and events[-1]["done"] and any("token" in e for e in events)


def test_a_sessions_second_turn_reuses_its_kv_on_the_same_replica(base, engine):
    sid = requests.post(base + "/api/sessions").json()["sessionId"]

    def turn(text):
        before = processed(engine)
        events = sse_events(requests.post(base + "/api/chat", json={
            "messages": [{"role": "user", "content": text}], "maxTokens": 12, "sessionId": sid}).text)
        wait_for(lambda: sum(processed(engine)) > sum(before), 10, "the replica counted the request")
        served = [i for i, (a, b) in enumerate(zip(before, processed(engine))) if b > a]
        return events[-1], served

    first, on = turn("Name a colour.")
    second, again = turn("Name another one.")
    assert len(on) == 1 and again == on
    assert second["kvReusedTokens"] >= first["promptTokens"]


def test_follow_up_turns_keep_their_prefix(base, engine):
    """Six conversations of three turns, four clients at once, through the OpenAI API, which
    carries no session: the prompt's known prefix alone routes each follow-up."""
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
    reused, lock = [], threading.Lock()

    def conversation(k):
        messages, previous = [], None
        for t in range(3):
            text = f"Conversation {k}, question {t}: name a number above {k * 7 + t}."
            messages.append({"role": "user", "content": text})
            r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=0)
            if previous is not None:
                with lock:
                    reused.append(r.usage.prompt_tokens_details.cached_tokens >= previous)
            previous = r.usage.prompt_tokens
            messages.append({"role": "assistant", "content": r.choices[0].message.content})

    clients = [threading.Thread(target=lambda w=w: [conversation(k) for k in range(w, 6, 4)]) for w in range(4)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(120)
    assert len(reused) == 12 and sum(reused) / len(reused) >= 0.95, reused


def test_a_second_front_end_joins_the_replicas_and_routes_by_what_they_hold(base, engine, tmp_path):
    """Each conversation's turns alternate between two front ends that share two replicas: a
    front end learns what the other's turns left in each replica from the replica's own report."""
    pids = [r["pid"] for r in reports(engine)]
    address = ray.get_runtime_context().gcs_address
    with running(serve_args(MODEL, "--ray", address, "--replicas", "2", "--threads", "1", "--parallel", "2",
                            "--ctx", "4096"), tmp_path, env=SAME_SETTINGS_ENV, timeout=90) as other:
        assert [r["pid"] for r in reports(engine)] == pids and len(replica_names()) == 2
        assert all(len(r["fronts"]) == 2 and engine.front in r["fronts"] for r in reports(engine))
        fronts, reused, lock = [base, other], [], threading.Lock()

        def conversation(k):
            messages, previous = [], None
            for t in range(4):
                messages.append({"role": "user", "content": f"Conversation {k}, question {t}: name a city."})
                r = requests.post(fronts[t % 2] + "/v1/chat/completions", timeout=60, json={
                    "model": MODEL, "messages": messages, "max_tokens": 12, "temperature": 0}).json()
                if previous is not None:
                    with lock:
                        reused.append(r["usage"]["prompt_tokens_details"]["cached_tokens"] >= previous)
                previous = r["usage"]["prompt_tokens"]
                messages.append({"role": "assistant", "content": r["choices"][0]["message"]["content"]})
                time.sleep(1.2)   # the other front end hears of it at its next poll of the replicas

        clients = [threading.Thread(target=conversation, args=(k,)) for k in range(4)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(120)
        assert len(reused) == 12 and all(reused), reused

        # Load comes from the replicas: a stream on the other front end is busy on this one too.
        r = requests.post(other + "/v1/chat/completions", stream=True, timeout=60, json={
            "model": MODEL, "messages": story(3), "max_tokens": 900, "stream": True, "ignore_eos": True})
        lines = r.iter_lines()   # kept: a dropped line iterator closes the connection, and so the request
        next(line for line in lines if line)
        wait_for(lambda: requests.get(base + "/api/queue/status").json()["active"] == 1, 3,
                 "this front end sees the other's request")
        r.close()
    # The other front end stopped and left: the replicas serve on, the same processes.
    assert [r["pid"] for r in reports(engine)] == pids
    assert all(r["fronts"] == [engine.front] for r in reports(engine))
    r = requests.post(base + "/v1/chat/completions", timeout=60, json={
        "model": MODEL, "messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 4})
    assert r.status_code == 200


def test_a_gunicorn_worker_is_a_front_end_of_the_replicas(base, engine, tmp_path):
    pids = [r["pid"] for r in reports(engine)]
    env = {**SAME_SETTINGS_ENV, "TENSORSHARP_RAY": ray.get_runtime_context().gcs_address}
    args = ["-m", "gunicorn", "-k", "tensorsharp.server.worker.GeventWorker", "-w", "1", "--timeout", "120",
            "--no-control-socket", "-b", "127.0.0.1:{port}", "tensorsharp.server.wsgi:app"]
    with running(args, tmp_path, env=env, timeout=90) as other:
        client = openai.OpenAI(base_url=other + "/v1", api_key="unused")
        pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "What is 2+3?"}], max_tokens=12, temperature=0,
            stream=True) if c.choices]
        assert "5" in "".join(pieces)
        assert [r["pid"] for r in reports(engine)] == pids
        assert all(len(r["fronts"]) == 2 for r in reports(engine))
    assert [r["pid"] for r in reports(engine)] == pids
    assert all(r["fronts"] == [engine.front] for r in reports(engine)), "the worker did not leave"


def test_a_client_that_leaves_cancels_its_request_on_the_replica(base, engine, monkeypatch):
    held = []   # tokens the replica's cache holds for each request that ended: prompt and reply
    ended = engine.router.ended
    monkeypatch.setattr(engine.router, "ended", lambda i, tokens=None: (held.append(tokens), ended(i, tokens)))
    r = requests.post(base + "/v1/chat/completions", stream=True, timeout=60, json={
        "model": MODEL, "messages": story(9), "max_tokens": 900, "stream": True, "ignore_eos": True})
    next(line for line in r.iter_lines() if line)
    r.close()
    wait_for(lambda: held, 60, "the request ended")
    assert held[0] and len(held[0]) < 300   # cut short, not run to its 900 tokens


def test_a_replica_killed_mid_stream_fails_only_its_requests_and_comes_back(base, engine, monkeypatch):
    router = engine.router
    # The counts below start from nothing: an earlier test's request (the cancelled one) may still
    # be ending on the replica or in this front end's pump, which then takes one off a count.
    wait_for(lambda: not any(router.inflight) and not any(router.others)
             and not any(r["active"] or r["pending"] for r in reports(engine)), 60, "the replicas are idle")
    picks = []   # (replica 0 up before, choice, replica 0 up after)
    pick = router.pick

    def spy(*args, **kw):
        before = router.alive[0]
        choice = pick(*args, **kw)
        picks.append((before, choice, router.alive[0]))
        return choice
    monkeypatch.setattr(router, "pick", spy)

    results, started = [None] * 4, threading.Semaphore(0)

    # Streams that still run through the placement checks and the kill below: a greedy story soon
    # repeats itself, and then prompt-lookup guesses write 800 tokens in 2-3 s at 1 thread, so
    # they are 3000 tokens long (the cluster's context is 4096 for them).
    def stream(k):
        # A system message of its own opens each prompt: with the template's default one they would
        # share most of their tokens with each other and with the stories earlier tests left in a
        # replica, and the router rightly sends a prompt where its prefix is, not where load is least.
        messages = [{"role": "system", "content": f"Writer {k} writes long stories."}, *story(k)]
        r = requests.post(base + "/v1/chat/completions", stream=True, timeout=120,
                          json={"model": MODEL, "messages": messages, "max_tokens": 3000, "stream": True,
                                "temperature": 0, "ignore_eos": True})
        lines = r.iter_lines()
        first = next(line for line in lines if line)
        started.release()
        results[k] = sse_events(b"\n\n".join([first, *[line for line in lines if line]]))

    clients = [threading.Thread(target=stream, args=(k,)) for k in range(4)]
    for c in clients:
        c.start()
    for _ in clients:
        assert started.acquire(timeout=60)
    wait_for(lambda: sum(router.inflight) == 4, 10, "the four streams are placed")
    assert router.inflight == [2, 2]   # least load spreads them
    # A fifth request waits in replica 0's queue (its two places are taken) when replica 0 dies:
    # it has not started, so it moves to replica 1 and is answered there.
    queued = {}
    fifth = threading.Thread(target=lambda: queued.update(r=requests.post(
        base + "/v1/chat/completions", timeout=120,
        json={"model": MODEL, "messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 4})))
    fifth.start()
    wait_for(lambda: router.inflight == [3, 2], 10, "the fifth request is queued on replica 0")
    pid = engine._reports[0]["pid"]
    ray.kill(engine.actors[0], no_restart=False)

    # Requests keep coming while replica 0 is away: each is answered, by replica 1.
    outage = []
    wait_for(lambda: not router.alive[0], 10, "the front end knows replica 0 is gone")
    while not router.alive[0]:
        r = requests.post(base + "/v1/chat/completions", timeout=60, json={
            "model": MODEL, "messages": [{"role": "user", "content": f"Hi {len(outage)}"}], "max_tokens": 4})
        outage.append(r.status_code)
        assert len(outage) < 500, "replica 0 did not come back"
    assert outage and set(outage) == {200}
    assert not [p for p in picks if p[1] == 0 and not p[0] and not p[2]], "routed to a replica known dead"

    for c in clients:
        c.join(120)
        assert not c.is_alive(), "a stream hung after its replica died"
    errors = [[e["error"] for e in r if isinstance(e, dict) and "error" in e] for r in results]
    ends = [[c["finish_reason"] for e in r if isinstance(e, dict) for c in e.get("choices", ()) if c["finish_reason"]]
            for r in results]
    assert all(r[-1] == "[DONE]" for r in results)
    assert sorted(len(e) for e in errors) == [0, 0, 1, 1], errors
    assert all(("replica 0" in e[0]["message"]) if e else end == ["length"] for e, end in zip(errors, ends))
    fifth.join(60)
    assert queued["r"].status_code == 200 and queued["r"].json()["choices"][0]["message"]["content"]

    # Back as a new process, it takes work again.
    assert engine._reports[0]["pid"] != pid
    before = router.placed[0]
    two = [threading.Thread(target=requests.post, args=(base + "/v1/chat/completions",), kwargs={"json": {
        "model": MODEL, "messages": [{"role": "user", "content": f"Count to {k + 3}."}], "max_tokens": 8}})
        for k in range(2)]
    for t in two:
        t.start()
    for t in two:
        t.join(60)
    assert router.placed[0] > before


def kill_until_all_down(engine, within: float) -> None:
    """Kills the replicas the front end still counts alive until it counts none. Ray restarts a
    killed replica at once, and one back within the monitor's wait answers its poll as if it had
    never gone: on a loaded machine one kill of each may never show both down at one poll."""
    deadline = time.monotonic() + within
    while any(engine.router.alive):
        assert time.monotonic() < deadline, "timed out waiting until the front end saw every replica go"
        for i, a in enumerate(engine.actors):
            if engine.router.alive[i]:
                ray.kill(a, no_restart=False)
        settle = time.monotonic() + 5
        while any(engine.router.alive) and time.monotonic() < settle:
            time.sleep(0.05)


def test_with_every_replica_down_the_front_end_answers_503_then_recovers(base, engine):
    wait_for(lambda: all(engine.router.alive), 90, "both replicas are up")
    kill_until_all_down(engine, 60)
    r = requests.post(base + "/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert r.json()["error"]["code"] == "engine_unavailable"
    assert requests.get(base + "/health").status_code == 503
    wait_for(lambda: requests.get(base + "/health").status_code == 200, 120, "the replicas are back")
    r = requests.post(base + "/api/chat/ollama", json={
        "model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": False,
        "options": {"num_predict": 4}})
    assert r.status_code == 200 and json.loads(r.text)["done"]
