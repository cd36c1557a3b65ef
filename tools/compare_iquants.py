"""Quantize a model to the i-quants with llama.cpp and compare our logits with llama.cpp's on each file.

llama.cpp's own quantizer (llama_model_quantize, through the llama-cpp-python sdist's ctypes
binding and a libllama built from the same sdist) writes one file per type; both engines then
evaluate the same token sequence teacher-forced, and the report gives argmax agreement where
llama.cpp's top-1/top-2 margin is at least 0.5 and 0.1, and the mean |delta log-prob| of its
top-1 token: the bounds the engine was held to on the real models (all, >= 98%, <= 0.05).
Q4_K_M and IQ4_XS files run too, as a baseline of types supported before. --oracle also runs
tensorsharp.testing.reference (numpy, float64, the kernels' activation rounding) on the first
tokens: what separates our logits from it is float rounding alone. The 1-2 bit types need an importance
matrix in llama.cpp: a uniform one (all ones) is passed, which is plain unweighted quantization.
Matrices whose rows are not a whole number of 256-element blocks fall back to llama.cpp's choice
of another type, as they do for every download.

    LLAMA_CPP_PY=/work/llama/llama_cpp_python-0.3.36 LLAMA_CPP_LIB_PATH=/work/llama/build/bin \\
        python tools/compare_iquants.py [--model smollm2-135m] [--types IQ3_S,IQ2_XXS] [--tokens 128]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile
import types
from collections import Counter
from pathlib import Path

import numpy as np
from gguf import GGUFReader

from tensorsharp import store
from tensorsharp.llm import Model
from tensorsharp.testing.reference import reference_logits

# llama_ftype per type; llama.cpp's IQ2_S file type stores IQ2_XS matrices, its IQ2_M stores IQ2_S.
FTYPES = {"Q4_K_M": 15, "IQ4_XS": 30, "IQ2_XXS": 19, "IQ2_XS": 20, "IQ3_XXS": 23, "IQ1_S": 24, "IQ3_S": 26,
          "IQ2_S": 29, "IQ1_M": 31}
TEXT = ("The history of the printing press begins in the fifteenth century, when movable type changed how "
        "books were made. def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
        "    return a\nRivers carry sediment from the mountains to the sea, shaping valleys and deltas. ")


def load_llama_cpp():
    """The low-level ctypes module only: the package's __init__ pulls in optional dependencies."""
    root = Path(os.environ.get("LLAMA_CPP_PY", "/work/llama/llama_cpp_python-0.3.36")) / "llama_cpp"
    pkg = types.ModuleType("llama_cpp")
    pkg.__path__ = [str(root)]
    sys.modules["llama_cpp"] = pkg
    import llama_cpp.llama_cpp as ll  # noqa: E402 (needs the package stub above)
    return ll


def quantize(ll, src: Path, dst: Path, type_name: str) -> None:
    reader = GGUFReader(str(src))
    keep = []  # the arrays the C structs point into must outlive the call
    entries = (ll.llama_model_imatrix_data * (len(reader.tensors) + 1))()
    n = 0
    for t in reader.tensors:
        if len(t.shape) >= 2:
            ones = np.ones(int(t.shape[0]), dtype=np.float32)  # one weight per input column
            name = t.name.encode()
            keep += [ones, name]
            entries[n].name = name
            entries[n].data = ones.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[n].size = ones.size
            n += 1
    params = ll.llama_model_quantize_default_params()
    params.ftype = FTYPES[type_name]
    params.allow_requantize = True
    params.nthread = 2
    params.imatrix = ctypes.cast(entries, ctypes.POINTER(ll.llama_model_imatrix_data))
    rc = ll.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({type_name}) returned {rc}")


def llama_logits(ll, path: Path, ids: list[int]) -> np.ndarray:
    """(len(ids), n_vocab) logits of one teacher-forced batch, 2 threads, CPU."""
    mp = ll.llama_model_default_params()
    model = ll.llama_model_load_from_file(str(path).encode(), mp)
    cp = ll.llama_context_default_params()
    cp.n_ctx = cp.n_batch = cp.n_ubatch = max(len(ids), 64)
    cp.n_threads = cp.n_threads_batch = 2
    ctx = ll.llama_init_from_model(model, cp)
    n_vocab = ll.llama_vocab_n_tokens(ll.llama_model_get_vocab(model))
    batch = ll.llama_batch_init(len(ids), 0, 1)
    for i, tok in enumerate(ids):
        batch.token[i] = tok
        batch.pos[i] = i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1
    batch.n_tokens = len(ids)
    if ll.llama_decode(ctx, batch) != 0:
        raise RuntimeError("llama_decode failed")
    out = np.array([np.ctypeslib.as_array(ll.llama_get_logits_ith(ctx, i), shape=(n_vocab,))
                    for i in range(len(ids))])
    ll.llama_batch_free(batch)
    ll.llama_free(ctx)
    ll.llama_model_free(model)
    return out


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--types", default=",".join(FTYPES))
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--oracle", type=int, default=0, help="tokens to check against the numpy forward pass")
    args = ap.parse_args()
    ll = load_llama_cpp()
    quiet = ll.llama_log_callback(lambda level, text, user: None)
    ll.llama_log_set(quiet, None)
    ll.llama_backend_init()
    src = store.resolve(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        for type_name in args.types.split(","):
            dst = Path(tmp) / f"{type_name}.gguf"
            quantize(ll, src, dst, type_name)
            counts = Counter(t.tensor_type.name for t in GGUFReader(str(dst)).tensors if len(t.shape) >= 2)
            ours = Model(str(dst), n_ctx=512, n_threads=2)
            ids = ours.tokenize(TEXT)[:args.tokens]
            logits = ours.eval(ids, logits_all=True)
            a = log_softmax(logits)
            b = log_softmax(llama_logits(ll, dst, ids))
            ref = b.argmax(axis=-1)
            top2 = np.sort(b, axis=-1)[:, -2:]
            margin = top2[:, 1] - top2[:, 0]
            same = a.argmax(axis=-1) == ref
            dlp = float(np.mean(np.abs(a[np.arange(len(ids)), ref] - b[np.arange(len(ids)), ref])))
            share = ", ".join(f"{k} {v}" for k, v in counts.most_common())
            print(f"{args.model} {type_name:8s} | argmax agreement: margin>=0.5 {same[margin >= 0.5].mean():.3f} "
                  f"({int((margin >= 0.5).sum())}), margin>=0.1 {same[margin >= 0.1].mean():.3f} "
                  f"({int((margin >= 0.1).sum())}), all {same.mean():.3f} | mean |d logprob| top-1 {dlp:.4f} "
                  f"| {len(ids)} tokens | matrices: {share}", flush=True)
            if args.oracle:
                k = min(args.oracle, len(ids))
                want = reference_logits(ours.transformer, ids[:k], quantize_inputs=True)
                rel = np.sqrt(np.mean((logits[:k] - want) ** 2) / np.mean(want ** 2))
                print(f"    ours vs numpy oracle, {k} tokens: relative RMS logit error {rel:.2e}, "
                      f"argmax equal {np.mean(logits[:k].argmax(-1) == want.argmax(-1)):.3f}", flush=True)
            del ours
    return 0


if __name__ == "__main__":
    sys.exit(main())
