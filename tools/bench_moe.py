"""MoE speed beside llama.cpp on scaled random models: prefill and decode tok/s of ours and of
llama.cpp on the same file, and the weight bytes a decode token reads beside the file's expert share.

Two families with their real routing shapes and narrower widths, random HF models written by
llama.cpp's own converter (tensorsharp.testing.llama_convert, cached under the store home):
  - Qwen3-MoE: Qwen3-30B-A3B's top-8 of 64 experts (128 in the real one), as the converter's Q8_0
    and as Q4_K_M made of it by llama.cpp's own quantizer (llama-cpp-python's llama_model_quantize,
    allowed to requantize: the layout is what a Q4_K_M download holds, the rounding does not matter
    to speed);
  - GPT-OSS: GPT-OSS-20B's top-4 of 32 experts, experts in MXFP4 (gguf.quants, as the tests make
    them), the other matrices Q8_0.
Each file runs through tools/bench.py's workers: ours and llama.cpp alternate in fresh processes at
the same thread count, --repeat times, and the table shows medians and their ratios.

The bytes a decode token reads are counted from the file (every matrix that is not an expert,
plus top-k experts per layer); that no other expert is read is what tests/models/test_moe.py
checks. Needs the `hf` extra, and llama-cpp-python (built without AMX, see the README) for the
comparison and the Q4_K_M file.

    python tools/bench_moe.py [--families qwen3moe-q8_0,qwen3moe-q4_k_m,gpt-oss-mxfp4] [--threads 2,1]
                              [--n-prompt 128] [--n-gen 32] [--repeat 3] [--llama-python PATH]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import bench

FAMILIES = ("qwen3moe-q8_0", "qwen3moe-q4_k_m", "gpt-oss-mxfp4")
HEAD_DIM = 64  # GPT-OSS's; Qwen3-MoE's is 128
QUANTIZE = """import sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype, p.allow_requantize, p.nthread = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, True, int(sys.argv[3])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p))
"""


def qwen3moe(args) -> Path:
    from tensorsharp.testing import llama_convert, tiny_gguf
    config = tiny_gguf.tiny_config(
        "qwen3moe", hidden_size=args.embd, moe_intermediate_size=args.ff_exp, num_experts=64,
        num_experts_per_tok=8, num_hidden_layers=args.layers, num_attention_heads=args.embd // 128,
        num_key_value_heads=max(1, args.embd // 128 // 4), head_dim=128)
    return llama_convert.convert(tiny_gguf.random_model(config, seed=0), "q8_0")


def gpt_oss(args) -> Path:
    from tensorsharp.testing import llama_convert, tiny_gguf
    heads = args.embd // HEAD_DIM
    config = tiny_gguf.tiny_config(
        "gpt_oss", hidden_size=args.embd, intermediate_size=args.ff_exp_gpt_oss, num_local_experts=32,
        num_experts_per_tok=4, num_hidden_layers=args.layers, num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 8), head_dim=HEAD_DIM, sliding_window=128, max_position_embeddings=131072,
        rope_parameters={"rope_type": "yarn", "factor": 32.0, "rope_theta": 150000.0, "beta_fast": 32.0,
                         "beta_slow": 1.0, "original_max_position_embeddings": 4096})
    q8 = llama_convert.convert(tiny_gguf.random_model(config, seed=0), "q8_0")
    return llama_convert.requantize(q8, "MXFP4", ("_exps.weight",))


def q4_k_m(q8: Path, args) -> Path | None:
    out = q8.with_name(q8.stem + "-q4_k_m.gguf")
    if out.is_file():
        return out
    part = out.with_suffix(".part")
    run = subprocess.run([args.llama_python or sys.executable, "-c", QUANTIZE, str(q8), str(part), "2"],
                         capture_output=True, text=True)
    if run.returncode != 0:
        print(f"llama.cpp's quantizer failed: {run.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    part.replace(out)
    return out


def expert_share(path: str) -> tuple[int, int, int, int]:
    """(experts' bytes in the file, their used and total count, the file's bytes)."""
    from tensorsharp.gguf import GGUFFile
    g = GGUFFile(path)
    arch = g.metadata["general.architecture"]
    experts = sum(t.n_bytes for n, t in g.tensors.items() if n.endswith(bench.EXPERT_SUFFIXES))
    return experts, g.metadata[f"{arch}.expert_used_count"], g.metadata[f"{arch}.expert_count"], os.path.getsize(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--embd", type=int, default=1024)
    # Multiples of 256, as the real 768 and 2880 are: narrower ones leave Q4_K_M's ffn_down_exps in Q5_0/Q8_0.
    ap.add_argument("--ff-exp", type=int, default=512, help="Qwen3-MoE's expert width")
    ap.add_argument("--ff-exp-gpt-oss", type=int, default=768, help="GPT-OSS's expert width")
    ap.add_argument("--threads", default="2", help="thread counts, comma-separated (1 is steadiest on a busy machine)")
    ap.add_argument("--n-prompt", type=int, default=128)
    ap.add_argument("--n-gen", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--llama-python", help="interpreter that has llama-cpp-python (default: this one)")
    args = ap.parse_args()
    have_llama = bench.has_llama(args)
    if not have_llama:
        print("llama-cpp-python is not installed: measuring tensorsharp alone, no Q4_K_M file", file=sys.stderr)

    files = []
    for family in args.families.split(","):
        t = time.perf_counter()
        if family == "gpt-oss-mxfp4":
            path = gpt_oss(args)
        elif family.startswith("qwen3moe"):
            path = qwen3moe(args)
            if family == "qwen3moe-q4_k_m":
                path = q4_k_m(path, args) if have_llama else None
        else:
            ap.error(f"unknown family {family!r}: one of {', '.join(FAMILIES)}")
        if path is not None:
            print(f"{family}: {path} (built or found in {time.perf_counter() - t:.0f} s)", flush=True)
            files.append((family, str(path)))

    threads = [int(t) for t in args.threads.split(",")]
    probe = {t: bench.measure("probe", "", t, args)["gbs"] for t in threads}
    print(f"{args.layers} layers, width {args.embd}; medians of {args.repeat} alternating runs; read-bandwidth probe "
          + ", ".join(f"{t} thread(s) {gbs:.1f} GB/s" for t, gbs in probe.items()))
    print(f"| file | threads | MB | experts MB | decode reads MB (share of file) | experts read | "
          f"pp{args.n_prompt} ours | pp llama.cpp | ratio | tg{args.n_gen} ours | tg llama.cpp | ratio | tg ours GB/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for family, path in files:
        per_token, _ = bench.weight_costs(path)
        experts, used, total, size = expert_share(path)
        for t in threads:
            res = bench.compare(path, t, args, have_llama)
            if res["ours"] is None:
                continue
            pp, pp_ref, pp_ratio = bench.cells(res, "pp")
            tg, tg_ref, tg_ratio = bench.cells(res, "tg")
            print(f"| {family} | {t} | {size / 1e6:.0f} | {experts / 1e6:.0f} | {per_token / 1e6:.1f} "
                  f"({per_token / size:.1%}) | {used}/{total} = {used / total:.1%} | {pp} | {pp_ref} | {pp_ratio} | "
                  f"{tg} | {tg_ref} | {tg_ratio} | {per_token * res['ours']['tg'] / 1e9:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
