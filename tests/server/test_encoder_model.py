"""A served encoder (tiny bert converted by llama.cpp's converter): the embedding routes give HF's
pooled vectors, and every generation route is a 400 in its client's dialect."""
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers", minversion="5")

import torch  # noqa: E402
from transformers import BertTokenizerFast  # noqa: E402

from tensorsharp.testing import llama_convert, tiny_encoders  # noqa: E402

pytestmark = pytest.mark.hf

TEXTS = ["The cat sat on the mat.", "A kitten is sleeping on the rug.", "Interest rates rose by half a point."]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    model, path = tiny_encoders.converted("bert")
    d = tmp_path_factory.mktemp("bert-tokenizer")
    llama_convert.write_wordpiece_tokenizer(d)
    return model, path, BertTokenizerFast.from_pretrained(d)


@pytest.fixture(scope="module")
def client(bert, tmp_path_factory):
    from tensorsharp.server.app import create_app
    app = create_app(str(bert[1]), n_threads=1, max_queue=4, upload_dir=tmp_path_factory.mktemp("uploads"))
    yield app.test_client()
    app.extensions["tensorsharp"].served.close()


def name(bert) -> str:
    return bert[1].stem


def hf_embedding(bert, text: str) -> np.ndarray:
    model, _, tok = bert
    with torch.no_grad():
        out = model(**tok(text, return_tensors="pt"))
    v = out.last_hidden_state[0, 0].double().numpy()   # the file's pooling: [CLS]
    return v / np.linalg.norm(v)


def test_openai_embeddings_match_hf(client, bert):
    r = client.post("/v1/embeddings", json={"model": name(bert), "input": TEXTS})
    assert r.status_code == 200, r.data
    data = sorted(r.get_json()["data"], key=lambda d: d["index"])
    for text, d in zip(TEXTS, data):
        v = np.array(d["embedding"])
        assert np.isclose(np.linalg.norm(v), 1, atol=1e-5)
        assert 1 - float(v @ hf_embedding(bert, text)) < 1e-3
    single = client.post("/v1/embeddings", json={"model": name(bert), "input": TEXTS[1]}).get_json()["data"][0]
    assert np.abs(np.array(single["embedding"]) - np.array(data[1]["embedding"])).max() < 1e-5


def test_ollama_embed(client, bert):
    r = client.post("/api/embed", json={"model": name(bert), "input": TEXTS[:2]})
    assert r.status_code == 200, r.data
    body = r.get_json()
    assert len(body["embeddings"]) == 2 and len(body["embeddings"][0]) == 64
    assert 1 - float(np.array(body["embeddings"][0]) @ hf_embedding(bert, TEXTS[0])) < 1e-3


@pytest.mark.parametrize("path, payload, what", [
    ("/api/generate", {"prompt": "hi"}, "generate"),
    ("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}, "chat"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, "chat"),
    ("/v1/completions", {"prompt": "hi"}, "completions"),
])
def test_generation_routes_say_the_model_only_embeds(client, bert, path, payload, what):
    r = client.post(path, json={"model": name(bert), **payload})
    assert r.status_code == 400, r.data
    body = r.get_json()
    message = body["error"] if path.startswith("/api/") else body["error"]["message"]
    assert message == f'"{name(bert)}" does not support {what}'


def test_show_lists_only_embedding(client, bert):
    r = client.post("/api/show", json={"model": name(bert)})
    assert r.status_code == 200, r.data
    assert r.get_json()["capabilities"] == ["embedding"]


@pytest.mark.parametrize("path", ["/v1/models", "/api/tags", "/api/ps", "/api/models", "/api/queue/status", "/health"])
def test_listing_routes_serve_an_encoder(client, path):
    r = client.get(path)
    assert r.status_code == 200, r.data
