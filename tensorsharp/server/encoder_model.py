"""A served encoder model (BERT family): weights, WordPiece tokenizer and the encoder's engine
thread; it embeds and generates nothing (no chat template, tools or constraints)."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from tensorsharp import store
from tensorsharp.engine.encoding import EncoderScheduler
from tensorsharp.gguf import GGUFFile
from tensorsharp.models import load_encoder, reading
from tensorsharp.server.model import ServedModel
from tensorsharp.tokenizer.wordpiece import WordPiece


class EncoderModel(ServedModel):
    """Built by ServedModel.load for a file whose architecture is an encoder."""

    generates = False

    def __init__(self, path: Path, gguf: GGUFFile, encoder, tokenizer: WordPiece, scheduler: EncoderScheduler,
                 load_ns: int = 0):
        self.path = path
        self.images = None
        self.gguf = gguf
        self.metadata = gguf.metadata
        self.transformer = encoder
        self.tokenizer = tokenizer
        self.template = None
        self.chat = None
        self.scheduler = scheduler
        self.load_ns = load_ns
        self.loaded_at = datetime.now(timezone.utc)
        self.registry = next((m for m in store.known_models() if m.file == path.name), None)
        names = {path.name, path.stem}
        if self.registry is not None:
            names.update((self.registry.name, *self.registry.aliases))
        self._names = {n.lower() for n in names}

    @classmethod
    def load_file(cls, path: Path, gguf: GGUFFile, t0: int, n_ctx: int = 0, n_threads: int = 0, max_queue: int = 16,
                  n_batch: int = 512) -> "EncoderModel":
        with reading(path):
            encoder = load_encoder(gguf)
            tokenizer = WordPiece.from_metadata(gguf.metadata)
        scheduler = EncoderScheduler(encoder, n_ctx, n_batch=n_batch, max_queue=max_queue, n_threads=n_threads)
        served = cls(path, gguf, encoder, tokenizer, scheduler, time.monotonic_ns() - t0)
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
    def embedding_model(self) -> bool:
        return True

    @property
    def capabilities(self) -> list[str]:
        return ["embedding"]
