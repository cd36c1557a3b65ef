"""Embeddings of the same GGUF files from tensorsharp and from llama-server, in one run.

    python tools/compare_embeddings.py --llama-server PATH [FILE ...] [--model NAME ...] [--prompts 8]

Each FILE (a GGUF path) or store model NAME is served by `llama-server --embeddings` (its pooling
is the file's own, or mean where the file names none, as tensorsharp pools) and embedded by
tensorsharp's engine; both get the same token ids. Prints the cosine distance of each pair
(median and maximum). Without files, it builds the tiny Qwen3 models of tests/engine/test_embeddings.py
(last-token and mean pooling) and the tiny bert and nomic-bert encoders of
tensorsharp.testing.tiny_encoders with llama.cpp's converter.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import requests

from tensorsharp import store
from tensorsharp.engine.batch import Stepper
from tensorsharp.engine.encoding import EncoderScheduler
from tensorsharp.engine.kv_cache import KVCache
from tensorsharp.engine.scheduler import Scheduler
from tensorsharp.gguf import GGUFFile
from tensorsharp.models import is_encoder, load_encoder, load_model
from tensorsharp.tokenizer import Tokenizer
from tensorsharp.testing.server import running_process
from tensorsharp.tokenizer.wordpiece import WordPiece

POOLING = {1: "mean", 2: "cls", 3: "last"}


def ours(path: Path, prompts: list[list[int]], pooling: str) -> list[np.ndarray]:
    import threading
    from tensorsharp.engine.request import Embedded, GenerationRequest
    gguf = GGUFFile(path)
    if is_encoder(gguf.metadata):
        scheduler = EncoderScheduler(load_encoder(gguf)).start()
    else:
        transformer = load_model(gguf)
        n_ctx = max(map(len, prompts)) + 1
        stepper = Stepper(transformer, KVCache(transformer, n_ctx, n_seq=2), n_batch=512)
        scheduler = Scheduler(stepper, Tokenizer.from_metadata(gguf.metadata), parallel=2).start()
    out, done = {}, threading.Semaphore(0)
    try:
        for i, p in enumerate(prompts):
            def sink(e, i=i):
                if isinstance(e, Embedded):
                    out[i] = e.vector
                    done.release()
            scheduler.submit(GenerationRequest(p, 0, pooling=pooling, reuse_prefix=False), sink)
        for _ in prompts:
            if not done.acquire(timeout=120):
                raise RuntimeError("tensorsharp did not answer")
    finally:
        scheduler.close()
    return [out[i] for i in range(len(prompts))]


def theirs(server: str, path: Path, prompts: list[list[int]], pooling: str) -> list[np.ndarray]:
    n_ctx = max(64, max(map(len, prompts)) + 1)
    args = ["-m", str(path), "--embeddings", "--pooling", pooling, "--embd-normalize", "-1", "--port", "{port}",
            "--host", "127.0.0.1", "-c", str(n_ctx), "-ub", str(n_ctx), "-b", str(n_ctx), "-t", "2"]
    with tempfile.TemporaryDirectory() as tmp, running_process(args, Path(tmp), executable=server) as (base, _):
        r = requests.post(base + "/v1/embeddings", json={"input": prompts, "model": "x"}, timeout=300)
        r.raise_for_status()
    data = sorted(r.json()["data"], key=lambda d: d["index"])
    return [np.asarray(d["embedding"], dtype=np.float64) for d in data]


def tiny_files() -> list[Path]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "engine"))
    from test_embeddings import sentence_transformers_files  # noqa: E402
    from tensorsharp.testing import llama_convert, tiny_gguf
    from tensorsharp.testing import tiny_encoders
    model = tiny_gguf.random_model(tiny_gguf.tiny_config("qwen3"), seed=11)
    decoders = [llama_convert.convert(model, files=sentence_transformers_files(m))
                for m in ("lasttoken", "mean_tokens")]
    return decoders + [tiny_encoders.converted(family)[1] for family in tiny_encoders.FAMILY_POOLING]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--model", action="append", default=[], help="a store model name (repeatable)")
    ap.add_argument("--llama-server", required=True)
    ap.add_argument("--prompts", type=int, default=8)
    args = ap.parse_args()
    files = list(args.files) + [store.resolve(m) for m in args.model] or tiny_files()
    rng = np.random.default_rng(0)
    for path in files:
        gguf = GGUFFile(path)
        arch = gguf.metadata["general.architecture"]
        pooling = POOLING.get(gguf.metadata.get(f"{arch}.pooling_type"), "mean")
        if is_encoder(gguf.metadata):   # [CLS] ids [SEP], as the WordPiece tokenizer adds them
            tok = WordPiece.from_metadata(gguf.metadata)
            head, tail = [tok.cls_id], [tok.sep_id]
        else:   # ids after the model's BOS as its tokenizer would add it
            tok = Tokenizer.from_metadata(gguf.metadata)
            head, tail = [tok.bos_id] if tok.bos_id is not None else [], []
        n_vocab = tok.vocab_size
        prompts = [head + rng.integers(0, n_vocab, int(n)).tolist() + tail for n in rng.integers(4, 60, args.prompts)]
        a, b = ours(path, prompts, pooling), theirs(args.llama_server, path, prompts, pooling)
        d = [1 - float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(a, b)]
        print(f"{path.name}: {arch}, pooling {pooling}, {len(prompts)} prompts: cosine distance "
              f"median {statistics.median(d):.2e}, max {max(d):.2e}")


if __name__ == "__main__":
    main()
