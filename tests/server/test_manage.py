"""Many models and their management on a temporary store holding links to two real models:
listing, loading on demand within max_loaded, keep_alive load and unload, /api/ps, /api/create
(fields, legacy Modelfile, uploaded blobs), /api/copy, /api/delete, /api/pull from a fake registry,
/api/push refused as Ollama refuses one, and the plain answer to GET and HEAD / ."""
import gc
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import weakref
from datetime import datetime, timezone

import httpx
import ollama
import pytest

from tensorsharp.engine.constraint import has_lltokenizer
from tensorsharp.server.catalog import CONSTRAINT_TOKEN_BYTES
from tensorsharp.server.model import shared_tokenizer
from tensorsharp.testing.model_fuzz import write_model
from tensorsharp.testing.models import fake_model, model_path, write_registry
from tensorsharp.testing.server import ndjson_lines

SMOL, GEMMA = "smollm2-135m:latest", "gemma3-270m:latest"
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


REAL = {}   # model name -> its file in the real store (read before the tests switch stores)


def link_model(name: str, models_dir):
    """The real model file linked into a temporary store (never moved or deleted), with its marker."""
    real = REAL[name]
    dest = models_dir / real.name
    try:
        os.link(real, dest)
    except OSError:   # another filesystem
        dest.symlink_to(real)
    marker = real.with_name(f".{real.name}.verified")
    if marker.exists():
        shutil.copy(marker, models_dir / marker.name)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("home")
    REAL.update((name, model_path(name)) for name in ("smollm2-135m", "gemma3-270m"))
    (root / "models").mkdir()
    wheels = root / "wheels"
    wheels.mkdir()
    registry = write_registry(root / "registry.json", [fake_model(wheels, "tiny", [b"GGUF" + b"\0" * 70_000])])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TENSORSHARP_HOME", str(root))
        mp.setenv("TENSORSHARP_REGISTRY", str(registry))
        mp.setenv("TENSORSHARP_PIP_ARGS", shlex.join(["--no-index", "--find-links", str(wheels)]))
        for name in ("smollm2-135m", "gemma3-270m"):
            link_model(name, root / "models")
        yield root
    assert all(p.is_file() for p in REAL.values())   # the shared store is untouched


@pytest.fixture(scope="module")
def app(home):
    from tensorsharp.server.app import create_app
    app = create_app("smollm2-135m", n_ctx=256, n_threads=1, parallel=1, cache_slots=0, max_loaded=1,
                     upload_dir=home / "uploads")
    yield app
    app.extensions["tensorsharp"].close()


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def tags(client):
    return sorted(m["name"] for m in client.get("/api/tags").get_json()["models"])


def ps(client):
    return {m["name"]: m for m in client.get("/api/ps").get_json()["models"]}


def gen(client, model, prompt="Hi", **kw):
    r = client.post("/api/generate", json={"model": model, "prompt": prompt, "stream": False, **kw})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_root_answers_plain_clients_as_ollama_and_browsers_with_the_page(client):
    for r in (client.get("/"), client.get("/", headers={"Accept": "*/*"}), client.head("/")):
        assert r.status_code == 200 and r.mimetype == "text/plain"
    assert client.get("/").data == b"Ollama is running"
    page = client.get("/", headers=BROWSER)
    assert page.status_code == 200 and page.mimetype == "text/html"


def test_store_models_listed_and_loaded_on_demand_one_at_a_time(client):
    assert tags(client) == [GEMMA, SMOL]
    assert [m["id"] for m in client.get("/v1/models").get_json()["data"]] == [GEMMA, SMOL]
    assert list(ps(client)) == [SMOL]
    show = client.post("/api/show", json={"model": "gemma3"}).get_json()   # read from the file: nothing loads
    assert show["details"]["family"] == "gemma3" and "num_ctx 256" in show["parameters"]
    assert "<start_of_turn>" in show["template"] and list(ps(client)) == [SMOL]
    first = weakref.ref(client.application.extensions["tensorsharp"].pool.get(SMOL))
    assert gen(client, "gemma3", options={"num_predict": 2})["model"] == "gemma3"
    gc.collect()
    assert first() is None                # nothing keeps an evicted model: its memory is freed
    (loaded,) = ps(client).values()       # max_loaded 1: smollm2 made room
    assert loaded["name"] == GEMMA and loaded["size_vram"] == 0
    assert loaded["size"] > os.path.getsize(REAL["gemma3-270m"])   # the file and the KV cache
    r = client.post("/v1/chat/completions", json={"model": SMOL, "max_tokens": 2,
                                                  "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200 and list(ps(client)) == [SMOL]


def test_keep_alive_sets_expiry_and_zero_unloads_with_done_reason_unload(client):
    gen(client, SMOL, keep_alive="10m", options={"num_predict": 1})
    left = (datetime.fromisoformat(ps(client)[SMOL]["expires_at"]) - datetime.now(timezone.utc)).total_seconds()
    assert 590 < left <= 600
    gen(client, SMOL, keep_alive=-1, options={"num_predict": 1})
    assert datetime.fromisoformat(ps(client)[SMOL]["expires_at"]).year > 2100
    r = client.post("/api/generate", json={"model": SMOL, "keep_alive": 0})
    assert r.get_json()["done_reason"] == "unload" and ps(client) == {}
    r = client.post("/api/chat", json={"model": "smollm2", "messages": []})
    assert r.get_json()["done_reason"] == "load" and list(ps(client)) == [SMOL]
    r = client.post("/api/chat", json={"model": "smollm2", "messages": [], "keep_alive": "0s"})
    assert r.get_json()["done_reason"] == "unload" and r.get_json()["message"]["content"] == "" and ps(client) == {}
    r = client.post("/api/generate", json={"model": SMOL, "prompt": "Hi", "keep_alive": "soon"})
    assert r.status_code == 400 and "keep_alive" in r.get_json()["error"]


def rss_anon() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))


def test_the_constraint_vocabulary_is_built_on_first_use_and_counted(client, monkeypatch):
    client.post("/api/generate", json={"model": SMOL, "keep_alive": 0})   # a fresh load, whatever ran before
    gen(client, SMOL, options={"num_predict": 1})
    served = client.application.extensions["tensorsharp"].pool.get(SMOL)
    assert not has_lltokenizer(served.tokenizer)
    assert shared_tokenizer(served.path, {}) is served.tokenizer   # another name over the file shares it
    assert not {"tokenizer.ggml.tokens", "tokenizer.ggml.merges"} & set(served.metadata)   # the tokenizer has them
    before = ps(client)[SMOL]["size"]
    assert before > os.path.getsize(REAL["smollm2-135m"]) + served.scheduler.cache.nbytes   # tables and buffers too
    pool = client.application.extensions["tensorsharp"].pool
    grown = []
    monkeypatch.setattr(pool, "grow", lambda s, n: grown.append((s, n)))
    gen(client, SMOL, format="json", options={"num_predict": 4})
    gen(client, SMOL, format="json", options={"num_predict": 4})
    assert grown == [(served, CONSTRAINT_TOKEN_BYTES * served.tokenizer.vocab_size)]   # room made once, first
    assert has_lltokenizer(served.tokenizer)
    assert ps(client)[SMOL]["size"] - before == CONSTRAINT_TOKEN_BYTES * served.tokenizer.vocab_size


# Run in a fresh interpreter: in the test process, objects other tests left in the same heap arenas
# (Ray's threads, other models' tables) can keep pages from being handed back.
_UNLOAD = """
import time, gevent
from tensorsharp.server.app import create_app

def rss_anon():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))

app = create_app("smollm2-135m", n_ctx=256, n_threads=1, parallel=1, cache_slots=0, max_loaded=1)
client = app.test_client()
body = {"model": "%s", "prompt": "Hi", "stream": False, "options": {"num_predict": 1}}
assert client.post("/api/generate", json=body).status_code == 200
loaded = rss_anon()
client.post("/api/generate", json={"model": body["model"], "keep_alive": 0})
# The trim runs after the unloading request's response, and again a second later; on a busy
# machine that second can stretch, so wait for it rather than for a fixed time.
deadline = time.monotonic() + 20
while loaded - rss_anon() <= 40 << 20 and time.monotonic() < deadline:
    gevent.sleep(0.25)
print(loaded - rss_anon())
app.extensions["tensorsharp"].close()
""" % GEMMA


def test_unloading_a_model_hands_its_memory_back(home, tmp_path):
    out = subprocess.run([sys.executable, "-c", _UNLOAD], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # gemma3's vocabulary tables alone are ~60 MB (catalog.VOCAB_TOKEN_BYTES)
    assert int(out.stdout.split()[-1]) > 40 << 20   # 0 without the trim, 49 MB with it


def test_create_applies_system_prompt_and_parameters_then_copy_and_delete(client, home):
    system = "You are a pirate. Answer like one, always, arr."
    plain = gen(client, SMOL, "Hi", options={"num_predict": 8})
    told = gen(client, SMOL, "Hi", system=system, options={"num_predict": 8})
    r = client.post("/api/create", json={"model": "pirate", "from": "smollm2", "stream": False, "system": system,
                                         "parameters": {"num_predict": 2, "temperature": 0}})
    assert r.status_code == 200 and r.get_json() == {"status": "success"}
    assert "pirate:latest" in tags(client)
    show = client.post("/api/show", json={"model": "pirate"}).get_json()
    assert show["system"] == system and "num_predict 2" in show["parameters"]
    assert f'SYSTEM """{system}"""' in show["modelfile"] and "PARAMETER temperature 0" in show["modelfile"]
    pirate = gen(client, "pirate", "Hi")
    assert pirate["prompt_eval_count"] == told["prompt_eval_count"] != plain["prompt_eval_count"]
    assert pirate["eval_count"] <= 2                                    # its num_predict applies
    assert gen(client, "pirate", "Hi", options={"num_predict": 4})["eval_count"] > 2   # under the request's
    assert client.post("/api/copy", json={"source": "pirate", "destination": "corsair:v2"}).status_code == 200
    assert gen(client, "corsair:v2", "Hi")["prompt_eval_count"] == pirate["prompt_eval_count"]
    assert client.delete("/api/delete", json={"model": "pirate"}).status_code == 200
    assert "pirate:latest" not in tags(client) and "corsair:v2" in tags(client)
    assert client.delete("/api/delete", json={"model": "pirate"}).status_code == 404


def test_a_created_model_applies_on_the_openai_routes(client):
    system = "You are a pirate. Answer like one, always, arr."
    r = client.post("/api/create", json={"model": "buccaneer", "from": "smollm2", "stream": False, "system": system,
                                         "parameters": {"num_predict": 2, "temperature": 0, "stop": ["zzz"]}})
    assert r.status_code == 200

    def chat(model, messages, **kw):
        r = client.post("/v1/chat/completions", json={"model": model, "messages": messages, **kw})
        assert r.status_code == 200, r.get_json()
        return r.get_json()["usage"]
    hi = [{"role": "user", "content": "Hi"}]
    told = chat(SMOL, [{"role": "system", "content": system}, *hi], max_tokens=8)
    used = chat("buccaneer", hi)
    assert used["prompt_tokens"] == told["prompt_tokens"] and used["completion_tokens"] <= 2
    assert chat("buccaneer", hi, max_tokens=6)["completion_tokens"] > 2          # under the request's own
    own = chat("buccaneer", [{"role": "system", "content": "Be brief."}, *hi])    # the request's system prompt wins
    assert own["prompt_tokens"] < told["prompt_tokens"]

    r = client.post("/v1/completions", json={"model": "buccaneer", "prompt": "Once upon a time"})
    assert r.status_code == 200 and r.get_json()["usage"]["completion_tokens"] <= 2

    def respond(model, **kw):
        r = client.post("/v1/responses", json={"model": model, "input": "Hi", "store": False, **kw})
        assert r.status_code == 200, r.get_json()
        return r.get_json()
    plain = respond(SMOL, instructions=system, max_output_tokens=8)
    made = respond("buccaneer")
    assert made["instructions"] == system and made["max_output_tokens"] == 2
    assert made["usage"]["input_tokens"] == plain["usage"]["input_tokens"] and made["usage"]["output_tokens"] <= 2
    assert client.delete("/api/delete", json={"model": "buccaneer"}).status_code == 200


def test_create_from_a_modelfile_or_a_gguf_path_and_refusals(client, home):
    modelfile = ('FROM smollm2-135m\n# a comment\nSYSTEM """You are terse.\nVery terse."""\n'
                 'PARAMETER stop "<|im_end|>"\nPARAMETER stop "###"\nPARAMETER num_predict 3\n')
    r = client.post("/api/create", json={"name": "terse", "modelfile": modelfile})
    assert [e["status"] for e in ndjson_lines(r.data)][-1] == "success"
    assert gen(client, "terse", "Tell me about the sea.")["eval_count"] <= 3
    path = str(home / "models" / "gemma-3-270m-q4_k_m.gguf")
    assert client.post("/api/create", json={"model": "g", "from": path, "stream": False}).status_code == 200
    assert gen(client, "g", options={"num_predict": 1})["done"]
    (home / "broken.gguf").write_bytes(b"GGUF" + bytes(60))
    assert client.post("/api/create", json={"model": "broken", "from": str(home / "broken.gguf")}).status_code == 200
    r = client.post("/api/generate", json={"model": "broken", "prompt": "Hi"})
    assert r.status_code == 500 and "broken:latest could not be loaded: unsupported GGUF version" in r.get_json()["error"]
    for body, words in [({"model": "x", "from": "llama9"}, "not found"),
                        ({"model": "x", "from": str(home / "registry.json")}, "not a GGUF"),
                        ({"model": "x", "from": SMOL, "template": "{{ .System }} {{ .Prompt }}"}, "Jinja"),
                        ({"model": "x"}, "'from'"),
                        ({"model": "Bad Name!", "from": SMOL}, "invalid model name"),
                        ({"model": "smollm2-135m", "from": "gemma3"}, "store"),
                        ({"model": "x", "modelfile": "FROM smollm2\nADAPTER lora.gguf"}, "ADAPTER")]:
        r = client.post("/api/create", json={"stream": False, **body})
        assert r.status_code in (400, 404) and words in r.get_json()["error"], (body, r.get_json())


def test_delete_a_store_model_removes_only_the_temporary_link(client, home):
    link = home / "models" / "gemma-3-270m-q4_k_m.gguf"
    assert client.delete("/api/delete", json={"model": "gemma3"}).status_code == 200
    assert not link.exists() and GEMMA not in tags(client)
    assert client.post("/api/generate", json={"model": "gemma3", "prompt": "x"}).status_code == 404
    link_model("gemma3-270m", home / "models")   # put back for the tests after this one
    assert GEMMA in tags(client)


def test_pull_streams_ollama_progress_events(client, home):
    r = client.post("/api/pull", json={"model": "tiny"})
    events = ndjson_lines(r.data)
    assert events[0] == {"status": "pulling manifest"}
    layers = [e for e in events if "digest" in e]
    assert layers and layers[-1]["completed"] == layers[-1]["total"] == 70_004
    assert layers[-1]["status"] == "pulling " + layers[-1]["digest"][len("sha256:"):][:12]
    assert [e["status"] for e in events[-3:]] == ["verifying sha256 digest", "writing manifest", "success"]
    assert (home / "models" / "tiny.gguf").stat().st_size == 70_004 and "tiny:latest" in tags(client)
    r = client.post("/api/pull", json={"model": "tiny", "stream": False})
    assert r.get_json() == {"status": "success"}
    r = client.post("/api/pull", json={"model": "no-such-model", "stream": False})
    assert r.status_code == 404 and "known models" in r.get_json()["error"]


def test_the_ollama_client_uploads_a_blob_and_creates_a_model_from_it(app, client, home, tmp_path):
    ol = ollama.Client(host="http://localhost", transport=httpx.WSGITransport(app=app))
    path = write_model(tmp_path / "tiny.gguf")
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert client.head(f"/api/blobs/{digest}").status_code == 404
    assert ol.create_blob(path) == digest
    assert client.head(f"/api/blobs/{digest}").status_code == 200
    assert (home / "blobs" / f"sha256-{digest[7:]}").read_bytes() == path.read_bytes()
    assert client.post(f"/api/blobs/{digest}", data=path.read_bytes()).status_code == 200   # already here
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ollama.ResponseError) as e:
        ol._request_raw("POST", f"/api/blobs/{wrong}", content=b"not those bytes")
    assert e.value.status_code == 400 and "digest mismatch" in e.value.error
    assert client.head(f"/api/blobs/{wrong}").status_code == 404 and not list((home / "blobs").glob(".partial*"))
    assert client.head("/api/blobs/sha256:xyz").status_code == 400

    events = list(ol.create(model="tiny-blob", files={"tiny.gguf": digest}, system="Be brief.", stream=True))
    assert events[0].status == "parsing GGUF" and events[-1].status == "success"
    assert "tiny-blob:latest" in tags(client)
    r = ol.generate(model="tiny-blob", prompt="a b", raw=True, options={"num_predict": 2})
    assert r.done and r.eval_count <= 2
    with pytest.raises(ollama.ResponseError) as e:
        ol.create(model="nothing-here", files={"x.gguf": wrong})
    assert e.value.status_code == 400 and "was not uploaded" in e.value.error
    assert client.delete("/api/delete", json={"model": "tiny-blob"}).status_code == 200


def test_push_answers_as_ollama_does_for_a_push_it_cannot_do(app):
    ol = ollama.Client(host="http://localhost", transport=httpx.WSGITransport(app=app))
    with pytest.raises(ollama.ResponseError) as e:
        ol.push("smollm2")
    assert e.value.status_code == 500 and "no registry to push smollm2-135m:latest to" in e.value.error
    stream = ol.push("smollm2", stream=True)
    assert next(stream).status == "retrieving manifest"
    with pytest.raises(ollama.ResponseError) as e:
        next(stream)
    assert "no registry" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        ol.push("no-such-model")
    assert e.value.status_code == 404
