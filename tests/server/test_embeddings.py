"""/v1/embeddings, /api/embed and /api/embeddings on SmolLM2: shapes, encodings, dimensions, errors in
each dialect, batching, and the official clients (openai, ollama, LangChain's two) on a live server."""
import base64

import numpy as np
import pytest

from tensorsharp.testing.server import running, serve_args

MODEL = "smollm2-135m"
TEXTS = ["The cat sat on the mat.", "A kitten is sleeping on the rug.", "Interest rates rose by half a point."]


def vectors(body) -> np.ndarray:
    return np.array([d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])])


def test_openai_shape_and_unit_length(client):
    r = client.post("/v1/embeddings", json={"model": MODEL, "input": TEXTS})
    assert r.status_code == 200, r.data
    body = r.get_json()
    assert body["object"] == "list" and body["model"] == "smollm2-135m:latest"
    assert [d["object"] for d in body["data"]] == ["embedding"] * 3 and [d["index"] for d in body["data"]] == [0, 1, 2]
    v = vectors(body)
    assert v.shape == (3, 576) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 3
    sim = v @ v.T   # the two sentences about cats are nearer each other than either is to finance
    assert sim[0, 1] > max(sim[0, 2], sim[1, 2])


def test_batched_inputs_equal_single_ones(client):
    batch = vectors(client.post("/v1/embeddings", json={"model": MODEL, "input": TEXTS}).get_json())
    for i, text in enumerate(TEXTS):
        one = vectors(client.post("/v1/embeddings", json={"model": MODEL, "input": text}).get_json())[0]
        assert np.abs(one - batch[i]).max() < 1e-5


def test_token_ids_base64_and_dimensions(client):
    ids = [1, 504, 2365, 3469, 355, 260, 4448, 30]
    plain = client.post("/v1/embeddings", json={"model": MODEL, "input": [ids, ids[:4]]}).get_json()
    packed = client.post("/v1/embeddings", json={"model": MODEL, "input": [ids, ids[:4]],
                                                 "encoding_format": "base64"}).get_json()
    decoded = np.array([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in packed["data"]])
    assert np.array_equal(decoded, vectors(plain).astype(np.float32))
    assert plain["usage"]["prompt_tokens"] == 12
    short = vectors(client.post("/v1/embeddings", json={"model": MODEL, "input": [ids], "dimensions": 64}).get_json())[0]
    full = vectors(plain)[0]
    # Matryoshka truncation: the first 64 values, made unit length again.
    assert len(short) == 64 and np.allclose(short, full[:64] / np.linalg.norm(full[:64]), atol=1e-6)


@pytest.mark.parametrize("body, status, field", [
    ({"model": MODEL, "input": []}, 400, "input"),
    ({"model": MODEL, "input": ""}, 400, "input"),
    ({"model": MODEL, "input": [1, "a"]}, 400, "input"),
    ({"model": MODEL}, 400, "input"),
    ({"model": MODEL, "input": [[1, 2, 10 ** 9]]}, 400, "input"),
    ({"model": MODEL, "input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
    ({"model": MODEL, "input": "a", "dimensions": 0}, 400, "dimensions"),
    ({"model": MODEL, "input": "a", "dimensions": 4096}, 400, "dimensions"),
    ({"model": "nope", "input": "a"}, 404, "model"),
])
def test_openai_errors(client, body, status, field):
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code == status, r.data
    err = r.get_json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error" and err["param"] == field


def test_ollama_embed_and_legacy(client):
    r = client.post("/api/embed", json={"model": MODEL, "input": TEXTS[:2]})
    assert r.status_code == 200, r.data
    body = r.get_json()
    assert body["model"] == MODEL and body["prompt_eval_count"] > 2 and body["total_duration"] > 0
    v = np.array(body["embeddings"])
    assert v.shape == (2, 576) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    legacy = np.array(client.post("/api/embeddings", json={"model": MODEL, "prompt": TEXTS[0]}).get_json()["embedding"])
    # The legacy route answers the raw pooled state, the new one its unit-length form.
    assert np.linalg.norm(legacy) > 2 and np.allclose(legacy / np.linalg.norm(legacy), v[0], atol=1e-5)


def test_ollama_errors_and_truncate(client):
    long = "word " * 2000   # past the fixture's 512-token context
    r = client.post("/api/embed", json={"model": MODEL, "input": long, "truncate": False})
    assert r.status_code == 400 and "context" in r.get_json()["error"]
    assert client.post("/api/embed", json={"model": MODEL, "input": long}).status_code == 200
    for body in ({"model": MODEL, "input": [1, 2]}, {"model": MODEL, "input": []}, {"model": MODEL, "prompt": ""}):
        route = "/api/embeddings" if "prompt" in body else "/api/embed"
        r = client.post(route, json=body)
        assert r.status_code == 400 and isinstance(r.get_json()["error"], str)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with running(serve_args(MODEL, "--ctx", "512", "--parallel", "2"), tmp_path_factory.mktemp("embed")) as url:
        yield url


def test_official_clients(live):
    openai = pytest.importorskip("openai")
    ollama = pytest.importorskip("ollama")
    client = openai.OpenAI(base_url=live + "/v1", api_key="unused")
    # The client asks for base64 unless told otherwise and decodes it itself.
    packed = client.embeddings.create(model=MODEL, input=TEXTS)
    floats = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    a = np.array([d.embedding for d in packed.data])
    assert a.shape == (3, 576) and np.allclose(a, [d.embedding for d in floats.data], atol=1e-6)
    o = ollama.Client(host=live).embed(model=MODEL, input=TEXTS)
    assert np.allclose(np.array(o.embeddings), a, atol=1e-5)


def test_langchain_embeddings(live):
    lc_openai = pytest.importorskip("langchain_openai", reason="install langchain-openai")
    lc_ollama = pytest.importorskip("langchain_ollama", reason="install langchain-ollama")
    # check_embedding_ctx_length would tokenize with tiktoken, whose tables come from the network.
    oa = lc_openai.OpenAIEmbeddings(model=MODEL, base_url=live + "/v1", api_key="unused",
                                    check_embedding_ctx_length=False)
    ol = lc_ollama.OllamaEmbeddings(model=MODEL, base_url=live)
    docs = np.array(oa.embed_documents(TEXTS))
    assert docs.shape == (3, 576)
    assert np.allclose(oa.embed_query(TEXTS[1]), docs[1], atol=1e-5)
    assert np.allclose(ol.embed_documents(TEXTS), docs, atol=1e-5)
    assert np.allclose(ol.embed_query(TEXTS[0]), docs[0], atol=1e-5)
