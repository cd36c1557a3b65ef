"""MoE speed on a scaled random Qwen3-MoE: prefill and decode tok/s, and the weight bytes a decode
token reads beside the file's expert share.

A random HF Qwen3MoeForCausalLM with Qwen3-30B-A3B's routing shape (64 experts instead of 128,
top-8) and narrower widths is written by llama.cpp's own converter (tensorsharp.testing.llama_convert,
cached under the store home), then run by the engine. The bytes a decode token reads are counted
from the file (every matrix that is not an expert, plus top-k experts per layer); that no other
expert is read is what tests/models/test_moe.py checks. Decode's weight rate is set beside the
read-bandwidth probe of tools/bench_kernels.py, measured right after it. Needs the `hf` extra.

    python tools/bench_moe.py [--layers 6] [--embd 1024] [--ff-exp 384] [--experts 64] [--top-k 8]
                              [--outtype q8_0] [--threads 2] [--prompt 128] [--decode 32] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from tensorsharp import _kernels
from tensorsharp.engine.batch import Stepper
from tensorsharp.engine.kv_cache import KVCache
from tensorsharp.gguf import GGUFFile
from tensorsharp.models import load_model
from tensorsharp.testing import llama_convert, tiny_gguf

EXPERT_SUFFIXES = ("ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight")
PROBE_BYTES = 512 << 20  # well past the last-level cache


def build(args) -> str:
    head_dim = 128
    config = tiny_gguf.tiny_config(
        "qwen3moe", hidden_size=args.embd, moe_intermediate_size=args.ff_exp, num_experts=args.experts,
        num_experts_per_tok=args.top_k, num_hidden_layers=args.layers, num_attention_heads=args.embd // head_dim,
        num_key_value_heads=max(1, args.embd // head_dim // 4), head_dim=head_dim)
    return str(llama_convert.convert(tiny_gguf.random_model(config, seed=0), args.outtype))


def bytes_per_token(f: GGUFFile, top_k: int, n_expert: int) -> tuple[int, int]:
    """(weight bytes one decode token reads, bytes of all experts in the file). Vectors count too;
    the token embedding only as the output matrix (one row is looked up)."""
    experts = sum(t.n_bytes for n, t in f.tensors.items() if n.endswith(EXPERT_SUFFIXES))
    dense = sum(t.n_bytes for n, t in f.tensors.items() if not n.endswith(EXPERT_SUFFIXES))
    return dense + experts * top_k // n_expert, experts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--embd", type=int, default=1024)
    ap.add_argument("--ff-exp", type=int, default=384)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--outtype", default="q8_0", help="converter --outtype: f32, f16, bf16, q8_0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    t = time.perf_counter()
    path = build(args)
    print(f"model: {path} ({os.path.getsize(path) / 1e9:.2f} GB; built or found in {time.perf_counter() - t:.0f} s)")
    f = GGUFFile(path)
    model = load_model(f)
    per_token, experts = bytes_per_token(f, args.top_k, args.experts)
    size = os.path.getsize(path)
    tokens = np.random.default_rng(0).integers(0, model.hparams.n_vocab, args.prompt + args.decode)
    n_ctx = args.prompt + args.decode
    stepper = Stepper(model, KVCache(model, n_ctx=n_ctx), n_batch=args.prompt, n_threads=args.threads)
    prefill, decode = [], []
    for _ in range(args.repeat):
        p = args.prompt
        t = time.perf_counter()
        stepper.step(tokens[:p], np.arange(p), np.zeros(p), [p - 1])
        prefill.append(p / (time.perf_counter() - t))
        t = time.perf_counter()
        for i in range(p, n_ctx):
            stepper.step(tokens[i:i + 1], [i], [0], [0])
        decode.append(args.decode / (time.perf_counter() - t))
    pp, tg = statistics.median(prefill), statistics.median(decode)
    probe = np.ones(PROBE_BYTES, dtype=np.uint8)
    _kernels.read_probe(probe, args.threads)
    t = time.perf_counter()
    _kernels.read_probe(probe, args.threads)
    probe_gbs = PROBE_BYTES / (time.perf_counter() - t) / 1e9
    print(f"experts: {args.experts}, top-{args.top_k}, {args.layers} layers, width {args.embd}, "
          f"expert width {args.ff_exp}, {args.outtype}, {args.threads} threads")
    print(f"file: {size / 1e6:.0f} MB, experts {experts / 1e6:.0f} MB ({experts / size:.0%})")
    print(f"decode token reads {per_token / 1e6:.1f} MB of weights ({per_token / size:.1%} of the file; "
          f"experts {args.top_k}/{args.experts} = {args.top_k / args.experts:.1%} of theirs)")
    print(f"prefill ({args.prompt} tokens): {pp:.1f} tok/s   decode: {tg:.1f} tok/s "
          f"({per_token * tg / 1e9:.1f} GB/s of weights; read probe {probe_gbs:.1f} GB/s)")


if __name__ == "__main__":
    main()
