"""A seeded request samples the same tokens whatever the KV cache held and whatever shared its batch.

The guarantee: for one model file and thread count, a request with a seed gives the same tokens
and logprobs bit for bit, whether its prefix was cached (positions evaluated one at a time while an
earlier reply was decoded) or evaluated fresh in a batch, and whether it decoded alone or beside
other requests. It holds because every row of a matrix product takes the same arithmetic however
many rows share the call (csrc/matmul.c)."""
import pytest

MODEL = "smollm2-135m"
SYSTEM = {"role": "system", "content": "You are a creative storyteller."}
FIRST = {"role": "user", "content": "Write a short story about a dragon who learns to bake bread."}
SECOND = {"role": "user", "content": "Now tell it again from the bread's point of view."}


def ask(client, messages, max_tokens=24, **kw):
    body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "temperature": 1.0, "seed": 11,
            "logprobs": True, "top_logprobs": 3, **kw}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.data
    return r.get_json()


def tokens(choice) -> list:
    return [(t["token"], t["logprob"], [(a["token"], a["logprob"]) for a in t["top_logprobs"]])
            for t in choice["logprobs"]["content"]]


@pytest.fixture(scope="module")
def fresh_client(tmp_path_factory):
    """A second server whose cache has never seen the conversation."""
    from tensorsharp.server.app import create_app
    app = create_app(MODEL, n_ctx=512, n_threads=1, parallel=2, cache_slots=2, max_queue=4,
                     upload_dir=tmp_path_factory.mktemp("uploads"))
    yield app.test_client()
    app.extensions["tensorsharp"].served.close()


def test_same_seed_same_tokens_with_or_without_a_cached_prefix(client, fresh_client):
    first = ask(client, [SYSTEM, FIRST], max_tokens=32)["choices"][0]["message"]["content"]
    conversation = [SYSTEM, FIRST, {"role": "assistant", "content": first}, SECOND]
    warm = ask(client, conversation)
    cold = ask(fresh_client, conversation)
    # The cached prefix holds the first reply, whose positions were evaluated one token at a time.
    assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] > 40
    assert cold["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert tokens(warm["choices"][0]) == tokens(cold["choices"][0])


def test_same_seed_same_tokens_alone_or_batched_with_others(fresh_client):
    # Choice i of n is seeded seed + i; its rows share each step with the other choice's.
    together = ask(fresh_client, [SYSTEM, FIRST], n=2)["choices"]
    alone = ask(fresh_client, [SYSTEM, FIRST], seed=12)["choices"][0]
    assert tokens(together[1]) == tokens(alone)
    assert tokens(together[0]) != tokens(together[1])
