"""Hostile model files through the whole loader (tensorsharp.Model): byte flips, truncations,
absurd hyper-parameters and tensor shapes, on a tiny llama file. Each case must load and run, or
raise GGUFError; anything else, a crash or a hang is a finding.

Cases run in a child process (a crash must not take the caller with it) that reports one JSON
line per case; the parent restarts it after a crash or a hang, past the case that caused it.

    python -m tensorsharp.testing.model_fuzz [--cases 10000] [--seed 0]   (the long form)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import gguf
import numpy as np

from tensorsharp.testing.gguf_vocab import write_vocab

N_VOCAB, N_EMBD, N_FF, N_HEAD, N_KV, N_LAYER = 320, 64, 128, 4, 2, 2
ABSURD = [0, 1, -1, 3, 2 ** 31 - 1, 2 ** 32 + 64, 2 ** 63 - 1, -2 ** 63, 1e30, -1e30, float("nan"), float("inf"),
          1e-45, "x", "", [], [1, 2], True]
KEYS = ["llama.block_count", "llama.context_length", "llama.embedding_length", "llama.feed_forward_length",
        "llama.attention.head_count", "llama.attention.head_count_kv", "llama.attention.key_length",
        "llama.attention.value_length", "llama.rope.dimension_count", "llama.rope.freq_base",
        "llama.attention.layer_norm_rms_epsilon", "llama.rope.scaling.type", "llama.rope.scaling.factor",
        "llama.vocab_size", "llama.attention.sliding_window", "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges", "tokenizer.ggml.scores", "tokenizer.ggml.add_bos_token",
        "tokenizer.chat_template", "general.architecture", "general.alignment", "general.name"]
TENSOR_KINDS = ["drop", "shape", "type", "extra", "nan"]


def _hparams() -> dict:
    return {"llama.block_count": N_LAYER, "llama.context_length": 256, "llama.embedding_length": N_EMBD,
            "llama.feed_forward_length": N_FF, "llama.attention.head_count": N_HEAD,
            "llama.attention.head_count_kv": N_KV, "llama.rope.dimension_count": N_EMBD // N_HEAD,
            "llama.rope.freq_base": 10000.0, "llama.attention.layer_norm_rms_epsilon": 1e-5,
            "llama.vocab_size": N_VOCAB}


def _tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights in numpy (rows, cols) order, as GGUFWriter takes them."""
    kv = N_KV * N_EMBD // N_HEAD
    out = {"token_embd.weight": (N_VOCAB, N_EMBD), "output_norm.weight": (N_EMBD,)}
    for i in range(N_LAYER):
        out.update({f"blk.{i}.attn_norm.weight": (N_EMBD,), f"blk.{i}.attn_q.weight": (N_EMBD, N_EMBD),
                    f"blk.{i}.attn_k.weight": (kv, N_EMBD), f"blk.{i}.attn_v.weight": (kv, N_EMBD),
                    f"blk.{i}.attn_output.weight": (N_EMBD, N_EMBD), f"blk.{i}.ffn_norm.weight": (N_EMBD,),
                    f"blk.{i}.ffn_gate.weight": (N_FF, N_EMBD), f"blk.{i}.ffn_up.weight": (N_FF, N_EMBD),
                    f"blk.{i}.ffn_down.weight": (N_EMBD, N_FF)})
    return {name: (rng.standard_normal(shape) * 0.1).astype(np.float32) for name, shape in out.items()}


def _add(w: gguf.GGUFWriter, key: str, value) -> None:
    if isinstance(value, bool):
        w.add_bool(key, value)
    elif isinstance(value, int):
        (w.add_int64 if value < 0 else w.add_uint64)(key, value) if abs(value) >= 2 ** 31 else \
            (w.add_int32 if value < 0 else w.add_uint32)(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value) if abs(value) < 3e38 or value != value else w.add_float64(key, value)
    elif isinstance(value, str):
        w.add_string(key, value)
    else:
        w.add_array(key, value)


def write_model(path: Path, override: tuple[str, object] | None = None, tensor: tuple[str, str] | None = None,
                seed: int = 0) -> Path:
    """The tiny llama file, with one metadata key given an absurd value or one tensor spoiled."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("fuzz")
    for k, v in _hparams().items():
        _add(w, k, v)
    write_vocab(w, N_VOCAB, {"<|im_start|>": gguf.TokenType.CONTROL, "<|im_end|>": gguf.TokenType.CONTROL})
    if override is not None:
        w.kv_data[0].pop(override[0], None)
        _add(w, *override)
    weights = _tensors(rng)
    if tensor is not None:
        name, kind = tensor
        if kind == "drop":
            weights.pop(name)
        elif kind == "shape":
            weights[name] = np.zeros((*weights[name].shape[:-1], weights[name].shape[-1] + 32), np.float32)
        elif kind == "type":
            weights[name] = weights[name].astype(np.float16)
        elif kind == "extra":
            weights[f"{name}.extra"] = np.zeros(8, np.float32)
        elif kind == "nan":
            weights[name][...] = np.nan
    for name, data in weights.items():
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def case(i: int, seed: int, base: Path, work: Path) -> tuple[str, Path]:
    """Case i: (what it does, the file to load)."""
    r = random.Random(f"{seed}:{i}")
    kind = r.choice(["flip", "flip", "cut", "value", "value", "tensor"])
    path = work / f"case{i % 4}.gguf"
    if kind in ("flip", "cut"):
        data = bytearray(base.read_bytes())
        header = _data_offset(base)
        if kind == "cut":
            at = r.randrange(len(data)) if r.random() < 0.3 else r.randrange(header)
            path.write_bytes(bytes(data[:at]))
            return f"cut at {at}", path
        flips = []
        for _ in range(r.choice([1, 1, 2, 4, 16])):
            at = r.randrange(header)
            data[at] ^= 1 << r.randrange(8) if r.random() < 0.7 else r.randrange(1, 256)
            flips.append(at)
        path.write_bytes(bytes(data))
        return f"flip {flips}", path
    if kind == "value":
        key, value = r.choice(KEYS), r.choice(ABSURD)
        return f"{key} = {value!r}", write_model(path, override=(key, value))
    name = r.choice(list(_tensors(np.random.default_rng(0))))
    how = r.choice(TENSOR_KINDS)
    return f"tensor {name} {how}", write_model(path, tensor=(name, how))


def _data_offset(path: Path) -> int:
    from tensorsharp.gguf import GGUFFile
    with GGUFFile(path) as f:
        return f.data_offset


def _worker(seed: int, start: int, stop: int, base: Path, work: Path) -> None:
    """Runs cases [start, stop): one JSON line each, flushed before the next begins."""
    import tensorsharp
    from tensorsharp.errors import GGUFError
    for i in range(start, stop):
        what, path = case(i, seed, base, work)
        print(json.dumps({"i": i, "case": what, "begin": True}), flush=True)
        t0 = time.monotonic()
        try:
            m = tensorsharp.Model(str(path), n_ctx=32, n_threads=1)
            m.eval((m.tokenize("hi there", add_special=False) or [0])[:max(1, min(4, m.n_ctx - 1))])
            outcome = "loaded"
        except GGUFError:
            outcome = "GGUFError"
        except Exception as e:  # the finding: anything but GGUFError
            outcome = f"{type(e).__name__}: {str(e)[:200]}"
        print(json.dumps({"i": i, "case": what, "outcome": outcome, "s": round(time.monotonic() - t0, 3)}),
              flush=True)


def run(n_cases: int, seed: int = 0, timeout: float = 20.0, log=None) -> dict:
    """Runs cases 0..n_cases-1 in child processes. Returns {"outcomes": Counter, "findings": [...],
    "max_s": slowest case}; a finding is a case that raised something else, crashed or hung."""
    outcomes, findings, max_s = Counter(), [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = write_model(work / "base.gguf")
        i = 0
        while i < n_cases:
            cmd = [sys.executable, "-m", "tensorsharp.testing.model_fuzz", "--worker", str(i), str(n_cases),
                   "--seed", str(seed), "--base", str(base), "--work", str(work)]
            env = {**os.environ, "TENSORSHARP_THREADS": "1"}
            # From the work folder, so the installed package is imported rather than a source tree.
            child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                     cwd=work)
            current = None
            deadline = time.monotonic() + timeout
            import selectors
            sel = selectors.DefaultSelector()
            sel.register(child.stdout, selectors.EVENT_READ)
            while True:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    child.kill()
                    findings.append({**current, "outcome": f"hang (> {timeout} s)"})
                    outcomes["hang"] += 1
                    i = current["i"] + 1
                    break
                line = child.stdout.readline()
                if not line:
                    child.wait()
                    if current is not None:
                        findings.append({**current, "outcome": f"crash (exit {child.returncode})"})
                        outcomes["crash"] += 1
                        i = current["i"] + 1
                    else:
                        i = n_cases
                    break
                event = json.loads(line)
                if event.get("begin"):
                    current = event
                    deadline = time.monotonic() + timeout
                    continue
                current = None
                max_s = max(max_s, event["s"])
                kind = event["outcome"].split(":")[0]
                outcomes[kind] += 1
                if kind not in ("loaded", "GGUFError"):
                    findings.append(event)
                if log is not None and event["i"] % 500 == 499:
                    log(f"{event['i'] + 1} cases: {dict(outcomes)}")
            sel.close()
            child.stdout.close()
    return {"outcomes": outcomes, "findings": findings, "max_s": max_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    p.add_argument("--base", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args.seed, *args.worker, args.base, args.work)
        return 0
    t0 = time.monotonic()
    result = run(args.cases, args.seed, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(json.dumps({"cases": args.cases, "outcomes": dict(result["outcomes"]), "max_case_s": result["max_s"],
                      "findings": result["findings"][:50], "minutes": round((time.monotonic() - t0) / 60, 1)},
                     indent=1))
    return 1 if result["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
