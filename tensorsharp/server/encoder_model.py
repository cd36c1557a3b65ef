"""A served encoder model (BERT family): weights, WordPiece tokenizer and the encoder's engine
thread; it embeds and generates nothing (no chat template, tools or constraints)."""
from __future__ import annotations

import time
from pathlib import Path

from tensorsharp.engine.encoding import EncoderScheduler
from tensorsharp.gguf import GGUFFile
from tensorsharp.models import load_encoder, reading
from tensorsharp.server.catalog import Spec
from tensorsharp.server.model import ServedModel
from tensorsharp.tokenizer.wordpiece import WordPiece


class EncoderModel(ServedModel):
    """Built by ServedModel.load for a file whose architecture is an encoder."""

    generates = False

    @classmethod
    def load_file(cls, path: Path, gguf: GGUFFile, t0: int, n_ctx: int = 0, n_threads: int = 0, max_queue: int = 16,
                  n_batch: int = 512, spec: Spec | None = None) -> "EncoderModel":
        with reading(path):
            encoder = load_encoder(gguf)
            tokenizer = WordPiece.from_metadata(gguf.metadata)
        scheduler = EncoderScheduler(encoder, n_ctx, n_batch=n_batch, max_queue=max_queue, n_threads=n_threads)
        served = cls(path, gguf, encoder, tokenizer, scheduler, time.monotonic_ns() - t0, spec=spec)
        scheduler.start()
        return served

    @property
    def supports_tools(self) -> bool:
        return False

    @property
    def supports_thinking(self) -> bool:
        return False

    @property
    def pooling(self) -> str:
        return self.transformer.hparams.pooling

    @property
    def memory_bytes(self) -> int:
        # No KV cache: a batch's scratch lives only while it runs.
        return self.facts.held_bytes(self.file_size, 0, False)
