"""Hostile model files (issue 18, item 7): mutated tiny llama files through tensorsharp.Model in child
processes load or raise GGUFError (no other exception, crash or hang), and the CLI reports a bad
file in one line. The long form: python -m tensorsharp.testing.model_fuzz --cases 10000."""
import subprocess
import sys

from tensorsharp.testing import model_fuzz
from tensorsharp.testing.server import free_port

N_CASES = 600


def test_mutated_model_files_load_or_raise_gguf_error():
    result = model_fuzz.run(N_CASES, seed=18)
    assert result["findings"] == []
    assert result["outcomes"]["GGUFError"] > N_CASES // 3 and result["outcomes"]["loaded"] > N_CASES // 10
    assert result["max_s"] < 5


def test_each_absurd_value_of_each_key_is_a_gguf_error_or_loads(tmp_path):
    """Every (key, value) pair of the catalogue once, in this process (the random cases sample them)."""
    import tensorsharp
    from tensorsharp.errors import GGUFError
    odd = []
    for key in model_fuzz.KEYS:
        for value in model_fuzz.ABSURD:
            path = model_fuzz.write_model(tmp_path / "m.gguf", override=(key, value))
            try:
                tensorsharp.Model(str(path), n_ctx=16, n_threads=1)
            except GGUFError:
                pass
            except Exception as e:
                odd.append(f"{key} = {value!r}: {type(e).__name__}: {e}")
    assert odd == []


def test_the_cli_reports_a_bad_model_file_in_one_line(tmp_path):
    path = model_fuzz.write_model(tmp_path / "bad.gguf", override=("llama.attention.head_count", 0))
    r = subprocess.run([sys.executable, "-m", "tensorsharp", "serve", "--model", str(path),
                        "--port", str(free_port())], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tensorsharp: error: bad.gguf"), r.stderr
    assert "Traceback" not in r.stderr
