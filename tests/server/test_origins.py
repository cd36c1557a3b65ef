"""Web pages and host names (issue 18, items 2 and 6): a cross-site page cannot drive the server,
DNS rebinding cannot read it, an allowed origin gets CORS, and HEAD/OPTIONS are not 401."""
import pytest

from tensorsharp.server.app import create_app
from tensorsharp.server.model import ServedModel

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT = {"model": FILE, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
EVIL = "http://evil.example"
FRIEND = "http://localhost:3000"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = create_app("smollm2-135m", n_ctx=256, n_threads=1, parallel=1, cache_slots=0,
                     upload_dir=tmp_path_factory.mktemp("uploads"), allowed_origins=FRIEND,
                     allowed_hosts="llm.lan", api_key="")
    yield app
    app.extensions["tensorsharp"].served.close()


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def simple_post(client, path, origin=EVIL, host="127.0.0.1:5000", **headers):
    """What a page's <form> or fetch(no-cors) sends: a text/plain body, no preflight."""
    return client.post(path, data='{"model": "%s", "messages": [{"role": "user", "content": "Hi"}], '
                                  '"max_tokens": 2}' % FILE,
                       headers={"Content-Type": "text/plain", "Origin": origin, "Host": host, **headers})


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat", "/api/generate"])
def test_cross_site_simple_post_is_refused(client, path):
    r = simple_post(client, path)
    assert r.status_code == 403
    err = r.get_json()["error"]
    message = err["message"] if isinstance(err, dict) else err
    assert "requests from origin http://evil.example are not allowed" in message and "--allowed-origins" in message
    assert "Access-Control-Allow-Origin" not in r.headers


def test_a_page_that_hides_its_origin_is_refused_by_its_fetch_metadata(client):
    r = client.post("/v1/chat/completions", json=CHAT, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403


def test_rebinding_host_is_refused_on_a_loopback_connection(client):
    r = client.get("/v1/models", headers={"Host": "evil.example:5000"})
    assert r.status_code == 403 and "host name 'evil.example'" in r.get_json()["error"]["message"]
    r = client.post("/api/chat", json={**CHAT, "stream": False}, headers={"Host": "evil.example"})
    assert r.status_code == 403 and "--allowed-hosts" in r.get_json()["error"]


@pytest.mark.parametrize("host", ["localhost:5000", "127.0.0.1:5000", "[::1]:5000", "llm.lan:5000", "127.0.0.2"])
def test_loopback_and_allowed_hosts_pass(client, host):
    assert client.get("/v1/models", headers={"Host": host}).status_code == 200


def test_same_origin_page_works(client):
    own = "http://localhost:5000"
    r = client.post("/v1/chat/completions", json=CHAT, headers={"Origin": own, "Host": "localhost:5000"})
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers


def test_same_origin_page_must_declare_json(client):
    r = simple_post(client, "/v1/chat/completions", origin="http://localhost:5000", host="localhost:5000")
    assert r.status_code == 415 and "application/json" in r.get_json()["error"]["message"]


def test_curl_without_content_type_still_works(client):
    """curl -d sends application/x-www-form-urlencoded; Ollama's docs use it that way."""
    r = client.post("/api/generate", data='{"model": "%s", "prompt": "Hi", "stream": false, '
                                          '"options": {"num_predict": 2}}' % FILE,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.get_json()["done"]


def test_allowed_origin_gets_cors_and_preflight(client):
    pre = client.options("/v1/chat/completions", headers={
        "Origin": FRIEND, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization"})
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == FRIEND
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    r = client.post("/v1/chat/completions", json=CHAT, headers={"Origin": FRIEND})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == FRIEND
    assert r.headers["Vary"] == "Origin"


def test_preflight_from_a_refused_origin_is_403(client):
    pre = client.options("/v1/chat/completions", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 403 and "Access-Control-Allow-Origin" not in pre.headers


def test_any_origin_with_star(tmp_path):
    served = ServedModel.load("smollm2-135m", n_ctx=128, n_threads=1, parallel=1, cache_slots=0)
    app = create_app(served, upload_dir=tmp_path, allowed_origins="*", allowed_hosts="*", api_key="")
    try:
        c = app.test_client()
        r = c.get("/v1/models", headers={"Origin": EVIL, "Host": "llm.example"})
        assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == EVIL
    finally:
        app.extensions["tensorsharp"].served.close()


@pytest.fixture(scope="module")
def keyed(app):
    """The same model behind a key."""
    served = app.extensions["tensorsharp"].served
    keyed = create_app(served, api_key="s3cret", upload_dir=app.extensions["tensorsharp"].uploads.root)
    return keyed.test_client()


def test_head_of_the_page_and_options_need_no_key(keyed):
    assert keyed.get("/").status_code == 200
    assert keyed.head("/").status_code == 200
    assert keyed.options("/v1/chat/completions").status_code == 204
    assert keyed.options("/").status_code == 204
    assert keyed.head("/v1/models").status_code == 401   # data routes still need the key
