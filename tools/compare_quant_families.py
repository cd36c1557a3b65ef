"""Every converted family as k-quant and i-quant files made by llama.cpp's own quantizer, against llama-server.

Each family is a tiny random HF model whose widths are whole 256-element super-blocks
(tiny_gguf.aligned_config), converted to f32 GGUF by llama.cpp's convert_hf_to_gguf.py
(testing.llama_convert), then quantized by llama-quantize to each type (the i-quants of 3 bits and
fewer with an importance matrix llama-imatrix computes on a short text). A file's tensor types are
counted to show the type was applied and not fallen back from, and tools/compare_llama_server.py
runs it teacher-forced on llama-server's greedy reply. The llama.cpp binaries come from one build
folder (llama-server, llama-quantize, llama-imatrix):

    python tools/compare_quant_families.py --llama-bin DIR [--families llama3,gemma2] [--types Q4_K_M,IQ2_XS]

Prints one row per (family, type): tensor types of the matrices, argmax agreement overall and at
margin >= 0.5 / >= 0.1, mean and max |d log-prob| of llama.cpp's token and the mean over its top
tokens, and the mean over those tokens of ours and llama.cpp's from the numpy reference's in
float64 on the same dequantized weights (ours~ex, llama~ex: whose arithmetic strays). Bounds the
real models are held to (tests/models/test_reference_generation.py): all at margin >= 0.5, 98% at
>= 0.1, mean |d| <= 0.05; a row outside them is marked "!".
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from compare_llama_server import compare

from tensorsharp.gguf import GGUFFile
from tensorsharp.testing import llama_convert, tiny_gguf

# name -> (tiny_gguf architecture, config overrides), as tests/models/test_converted.py builds them.
FAMILIES = {
    "llama3": ("llama3", {}),
    "llama-yarn": ("llama", dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                                                  "original_max_position_embeddings": 64})),
    "gemma2": ("gemma2", {}),
    "phi3": ("phi3", {}),
    "granite": ("granite", {}),
    "olmo2": ("olmo2", {}),
    "olmo3": ("olmo3", {}),
    "smollm3": ("smollm3", {}),
    "qwen3": ("qwen3", {}),
    "qwen3moe": ("qwen3moe", {}),
    "gpt-oss": ("gpt_oss", {}),
}
TYPES = ["F32", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_XS", "IQ3_S", "IQ2_XS"]
# llama-quantize refuses these without an importance matrix (and quantizes others better with one).
NEEDS_IMATRIX = {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M", "Q2_K_S", "IQ3_XXS", "IQ3_S"}
# What llama-imatrix runs the f32 model on: any text does for random weights, so long as it fills
# a few contexts.
TEXT = " ".join(f"The quick brown fox jumps over the lazy dog {i} times, said {w}; then {i * 7 % 13} cats slept."
                for i in range(200) for w in ("Alice", "Bob"))


def _run(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")


def imatrix(bin_dir: Path, f32: Path) -> Path:
    out = f32.with_name(f32.stem + "-imatrix.gguf")
    if not out.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            text = Path(tmp) / "text.txt"
            text.write_text(TEXT)
            _run([str(bin_dir / "llama-imatrix"), "-m", str(f32), "-f", str(text), "-o", str(out), "-c", "64",
                  "-t", "1", "--no-ppl", "-ngl", "0"])
    return out


def quantize(bin_dir: Path, f32: Path, qtype: str) -> Path:
    """f32 as llama-quantize makes it in qtype (cached next to it)."""
    if qtype == "F32":
        return f32
    out = f32.with_name(f"{f32.stem}-{qtype.lower()}.gguf")
    if not out.is_file():
        part = out.with_suffix(".part")
        extra = ["--imatrix", str(imatrix(bin_dir, f32))] if qtype in NEEDS_IMATRIX else []
        _run([str(bin_dir / "llama-quantize"), *extra, str(f32), str(part), qtype, "1"])
        part.replace(out)
    return out


def matrix_types(path: Path) -> tuple[str, bool]:
    """How many of the file's matrices are stored in each type, most first; whether it has
    attention sinks (which the numpy reference does not apply)."""
    with GGUFFile(path) as f:
        counts = Counter(t.type.name for t in f.tensors.values() if len(t.shape) >= 2)
        sinks = any(name.endswith("attn_sinks.weight") for name in f.tensors)
    return " ".join(f"{name}x{n}" for name, n in counts.most_common()), sinks


def within_bounds(r: dict) -> bool:
    (_, at05), (_, at01) = r["margin"][0.5], r["margin"][0.1]
    return (at05 in (None, 1.0)) and (at01 is None or at01 >= 0.98) and (r["mean_diff"] or 0.0) <= 0.05


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--llama-bin", type=Path, required=True,
                   help="folder with llama-server, llama-quantize, llama-imatrix")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--types", default=",".join(TYPES))
    p.add_argument("--tokens", type=int, default=48, help="tokens llama-server generates")
    p.add_argument("--seed", type=int, default=0, help="of the random weights and prompt")
    args = p.parse_args()
    print(f"{'family':11s} {'type':7s} {'agree':>5s} {'>=0.5':>11s} {'>=0.1':>11s} {'mean|d|':>8s} {'max|d|':>8s} "
          f"{'top|d|':>8s} {'ours~ex':>8s} {'llama~ex':>8s}  matrices")
    for family in args.families.split(","):
        arch, overrides = FAMILIES[family]
        f32 = llama_convert.convert(tiny_gguf.random_model(tiny_gguf.aligned_config(arch, **overrides), seed=args.seed))
        for qtype in args.types.split(","):
            path = quantize(args.llama_bin, f32, qtype)
            types, sinks = matrix_types(path)
            r = compare(str(args.llama_bin / "llama-server"), path, n_tokens=args.tokens, seed=args.seed,
                        exact=not sinks)
            exact = [f"{r[k]:8.2e}" if k in r else f"{'-':>8s}" for k in ("ours_to_exact", "theirs_to_exact")]
            wide = [f"{share:.3f}/{count:<3d}" if count else "none" for count, share in (r["margin"][0.5],
                                                                                        r["margin"][0.1])]
            print(f"{family:11s} {qtype:7s} {r['agree']:5.3f} {wide[0]:>11s} {wide[1]:>11s} {r['mean_diff']:8.2e} "
                  f"{r['max_diff']:8.2e} {r['mean_top_diff']:8.2e} {' '.join(exact)}  {types}"
                  f"{'' if within_bounds(r) else '  !'}", flush=True)


if __name__ == "__main__":
    main()
