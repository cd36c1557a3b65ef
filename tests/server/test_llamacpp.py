"""llama-server's /tokenize and /detokenize on SmolLM2, against the tokenizer they expose."""
import pytest

MODEL = "smollm2-135m"


def test_tokenize_and_back(client):
    tok = client.application.extensions["tensorsharp"].served.tokenizer
    text = "Hello <|im_start|>world, café!"
    ids = client.post("/tokenize", json={"content": text}).get_json()["tokens"]
    assert ids == tok.encode(text, add_special=False, parse_special=True)
    assert tok.token_id("<|im_start|>") in ids
    plain = client.post("/tokenize", json={"content": text, "parse_special": False}).get_json()["tokens"]
    assert tok.token_id("<|im_start|>") not in plain
    assert client.post("/detokenize", json={"tokens": ids}).get_json() == {"content": text}
    assert client.post("/detokenize", json={"tokens": []}).get_json() == {"content": ""}


def test_add_special_and_pieces(client):
    tok = client.application.extensions["tensorsharp"].served.tokenizer
    with_bos = client.post("/tokenize", json={"content": "Hi", "add_special": True}).get_json()["tokens"]
    assert with_bos == tok.encode("Hi", add_special=True)
    pieces = client.post("/tokenize", json={"content": "Hi é", "with_pieces": True}).get_json()["tokens"]
    assert [p["id"] for p in pieces] == tok.encode("Hi é", add_special=False)
    joined = b"".join(bytes(p["piece"]) if isinstance(p["piece"], list) else p["piece"].encode() for p in pieces)
    assert joined.decode() == "Hi é"


@pytest.mark.parametrize("path, body, words", [
    ("/tokenize", {}, ["'content'"]),
    ("/tokenize", {"content": 5}, ["'content'"]),
    ("/tokenize", {"content": "x", "model": "nope"}, ["nope"]),
    ("/detokenize", {"tokens": ["a"]}, ["'tokens'"]),
    ("/detokenize", {"tokens": [10 ** 9]}, ["outside the vocabulary"]),
])
def test_errors(client, path, body, words):
    r = client.post(path, json=body)
    assert r.status_code in (400, 404)
    assert all(w in r.get_json()["error"] for w in words)
