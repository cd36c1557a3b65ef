"""The official ollama client against a real `tensorsharp serve` on a temporary store linking two
real models: it pulls, lists, switches between models by name, creates, copies, unloads with
keep_alive 0 and deletes, while the server process (its measured RSS) stays within the memory budget."""
import shlex

import ollama
import pytest

from tensorsharp.testing.models import fake_model, model_path, write_registry
from tensorsharp.testing.server import running_process, serve_args

MB = 1 << 20
# At a 256-token context the server itself (~105 MB), smollm2 (~125 MB counted) and gemma3 (~318 MB)
# fit; a third model (another smollm2, ~125 MB) does not.
BUDGET = 600 * MB
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("live-models")
    models = root / "home" / "models"
    models.mkdir(parents=True)
    for name in ("smollm2-135m", "gemma3-270m"):
        real = model_path(name)
        (models / real.name).symlink_to(real)   # never the real store's files themselves
        marker = real.with_name(f".{real.name}.verified")
        if marker.exists():
            (models / marker.name).write_bytes(marker.read_bytes())
    wheels = root / "wheels"
    wheels.mkdir()
    registry = write_registry(root / "registry.json", [fake_model(wheels, "tiny", [b"GGUF" + bytes(5000)])])
    env = {"TENSORSHARP_HOME": str(root / "home"), "TENSORSHARP_REGISTRY": str(registry),
           "TENSORSHARP_PIP_ARGS": shlex.join(["--no-index", "--find-links", str(wheels)]),
           "TENSORSHARP_MAX_MEMORY": str(BUDGET), "TENSORSHARP_CACHE_SLOTS": "0"}
    with running_process(serve_args("smollm2-135m", "--ctx", "256", "--parallel", "1", "--threads", "1",
                                    "--max-loaded", "3"), root, env=env) as (url, proc):
        yield url, proc.pid


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def loaded(client):
    return {m.model: m for m in client.ps().models}


def test_ollama_client_pulls_lists_switches_unloads_and_deletes(base):
    base, pid = base
    client = ollama.Client(host=base)
    statuses = [p.status for p in client.pull("tiny", stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert client.pull("tiny").status == "success"
    assert {m.model for m in client.list().models} == {"smollm2-135m:latest", "gemma3-270m:latest", "tiny:latest"}

    for name in ("smollm2-135m", "gemma3-270m", "smollm2-135m"):
        r = client.chat(model=name, messages=HI, options={"num_predict": 3})
        assert r.model == name and r.done and rss(pid) <= BUDGET
    assert set(loaded(client)) == {"smollm2-135m:latest", "gemma3-270m:latest"}

    assert client.create(model="pirate", from_="smollm2-135m", system="You are a pirate.",
                         parameters={"num_predict": 2}).status == "success"
    assert client.generate(model="pirate", prompt="Hi").eval_count <= 2 and rss(pid) <= BUDGET
    now = loaded(client)   # a third model over the budget: the least recently used idle one (gemma3) left
    assert set(now) == {"smollm2-135m:latest", "pirate:latest"} and sum(m.size for m in now.values()) <= BUDGET

    r = client.generate(model="pirate", keep_alive=0)
    assert r.done_reason == "unload" and set(loaded(client)) == {"smollm2-135m:latest"}

    assert client.copy("pirate", "corsair").status == "success"
    assert client.chat(model="corsair", messages=HI).done
    for name in ("pirate", "corsair", "tiny"):
        assert client.delete(name).status == "success"
    assert {m.model for m in client.list().models} == {"smollm2-135m:latest", "gemma3-270m:latest"}
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="corsair", messages=HI)
    assert e.value.status_code == 404
