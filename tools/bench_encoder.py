"""Encoder pass time against llama-server on the same file: a bge-small-shaped BERT (384 wide,
12 blocks, 12 heads, 1536 ff, BERT's vocabulary) with random weights, converted by llama.cpp's
converter.

    python tools/bench_encoder.py --llama-server PATH [--outtype f16] [--seqs 16] [--len 128] [--threads 2]

Both embed the same token ids in one request (llama-server: one /v1/embeddings call with every
sequence, --pooling cls, -t threads); the tool prints the median of three runs of each, CPU time of
the process doing the work and wall time. Needs the `hf` extra.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
import transformers

from tensorsharp.gguf import GGUFFile
from tensorsharp.models import load_encoder
from tensorsharp.testing import llama_convert, tiny_encoders, tiny_gguf
from tensorsharp.testing.server import running_process

BGE_SMALL = dict(vocab_size=llama_convert.BERT_VOCAB, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2)
RUNS = 3


def process_cpu(pid: int) -> float:
    """User + system seconds of a process, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(who: str, runs: list[tuple[float, float]], n_tok: int) -> None:
    cpu, wall = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    print(f"{who:12s} cpu {cpu:6.2f} s   wall {wall:6.2f} s   {n_tok / wall:7.0f} tokens/s")


def ours(path, prompts, threads: int) -> list[tuple[float, float]]:
    enc = load_encoder(GGUFFile(path))
    enc.encode(prompts[:1], threads)
    runs = []
    for _ in range(RUNS):
        c0, w0 = time.process_time(), time.perf_counter()
        enc.encode(prompts, threads)
        runs.append((time.process_time() - c0, time.perf_counter() - w0))
    return runs


def theirs(server: str, path, prompts, threads: int) -> list[tuple[float, float]]:
    n_ctx = sum(map(len, prompts))
    args = ["-m", str(path), "--embeddings", "--pooling", "cls", "--port", "{port}", "--host", "127.0.0.1",
            "-c", str(n_ctx), "-b", str(n_ctx), "-ub", str(n_ctx), "-t", str(threads), "-np", str(len(prompts))]
    with tempfile.TemporaryDirectory() as tmp, running_process(args, Path(tmp), executable=server) as (base, proc):
        requests.post(base + "/v1/embeddings", json={"input": prompts[:1]}, timeout=300).raise_for_status()
        runs = []
        for _ in range(RUNS):
            c0, w0 = process_cpu(proc.pid), time.perf_counter()
            requests.post(base + "/v1/embeddings", json={"input": prompts}, timeout=300).raise_for_status()
            runs.append((process_cpu(proc.pid) - c0, time.perf_counter() - w0))
        return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-server", required=True)
    ap.add_argument("--outtype", default="f16", choices=("f32", "f16", "q8_0"))
    ap.add_argument("--seqs", type=int, default=16)
    ap.add_argument("--len", type=int, default=128, help="tokens per sequence, [CLS] and [SEP] included")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model = tiny_gguf.random_encoder(transformers.BertConfig(**BGE_SMALL), seed=3)
    path = llama_convert.convert(model, outtype=args.outtype, files=tiny_encoders.pooling_files("cls"))
    rng = np.random.default_rng(0)
    prompts = [[101, *rng.integers(1000, BGE_SMALL["vocab_size"], args.len - 2).tolist(), 102]
               for _ in range(args.seqs)]
    n_tok = args.seqs * args.len
    print(f"{path.name}: {args.seqs} sequences of {args.len} tokens, {args.threads} threads, median of {RUNS}")
    report("tensorsharp", ours(path, prompts, args.threads), n_tok)
    report("llama-server", theirs(args.llama_server, path, prompts, args.threads), n_tok)


if __name__ == "__main__":
    main()
