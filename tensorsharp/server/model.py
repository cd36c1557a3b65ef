"""A loaded model: weights, tokenizer, chat template, scheduler, and its facts."""
from __future__ import annotations

import os
import threading
import time
import weakref
from datetime import datetime, timezone
from pathlib import Path

from tensorsharp import config, store
from tensorsharp.chat.output import chat_format
from tensorsharp.chat.template import ChatTemplate, image_format
from tensorsharp.engine import scheduler as sched
from tensorsharp.engine.constraint import has_lltokenizer
from tensorsharp.engine.draft_model import check_vocab
from tensorsharp.errors import TensorSharpError
from tensorsharp.gguf import GGUFFile
from tensorsharp.models import is_encoder, load_model, reading
from tensorsharp.server.catalog import Spec, facts_of, file_spec, with_template
from tensorsharp.server.images import ImageEmbedder
from tensorsharp.tokenizer import Tokenizer
from tensorsharp.vision import find_projector, load_projector

# The vocabulary arrays of the GGUF metadata, which the Tokenizer holds in its own form once built
# (the merges alone are ~10 MB of strings for a 151k vocabulary).
VOCAB_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges")

# Names made by /api/create over one file, loaded together, share one Tokenizer, and so one
# constraint vocabulary (constraint.lltokenizer keeps it per Tokenizer). Keyed by file version.
_tokenizers: "weakref.WeakValueDictionary[tuple, Tokenizer]" = weakref.WeakValueDictionary()
_tokenizers_lock = threading.Lock()


def shared_tokenizer(path: Path, metadata: dict) -> Tokenizer:
    """The Tokenizer of a model file: the one a loaded model of that file version already has, or
    built from metadata."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    with _tokenizers_lock:
        tokenizer = _tokenizers.get(key)
    if tokenizer is None:
        tokenizer = Tokenizer.from_metadata(metadata)
        with _tokenizers_lock:
            tokenizer = _tokenizers.setdefault(key, tokenizer)
    return tokenizer


class ServedModel:
    """Load with ServedModel.load(name_or_path, ...); close() stops its engine thread."""

    generates = True   # False: an encoder, which only embeds

    def __init__(self, path: Path, gguf: GGUFFile, transformer, tokenizer: Tokenizer,
                 scheduler: sched.Scheduler, load_ns: int = 0, tool_format: str | None = None,
                 images: ImageEmbedder | None = None, spec: Spec | None = None):
        self.path = path
        # The name it is served under and what that name adds (system prompt, template, options).
        self.spec = spec or file_spec(path)
        self.images = images   # None: a text-only model
        self.gguf = gguf
        self.metadata = gguf.metadata
        self.transformer = transformer
        self.tokenizer = tokenizer
        if self.generates:
            self._read_chat(tool_format, images is not None)
        else:   # an encoder: no template, tools or constraints
            self.template = self.chat = None
            self.facts = facts_of(gguf)
        self.scheduler = scheduler
        self.load_ns = load_ns
        self.loaded_at = datetime.now(timezone.utc)

    def _read_chat(self, tool_format: str | None, has_images: bool) -> None:
        """The chat template, tool-call syntax and reasoning markers the file's template implies."""
        gguf, tokenizer = self.gguf, self.tokenizer
        metadata = with_template(gguf.metadata, self.spec.template)
        self.template = ChatTemplate.for_model(metadata, tokenizer)
        # Tool-call syntax, reasoning markers and what the template can take, from the file.
        self.chat = chat_format(metadata, self.template.source, tool_format)
        self.facts = facts_of(gguf, self.template.source, has_images)
        # Markers the parsers read that this vocabulary holds as control tokens, which the decoder
        # would otherwise leave out of the text: without tools offered, then with.
        self.shown_tokens = tuple(tokenizer.control_ids(self.chat.parser_markers(tools)) for tools in (False, True))
        for key in VOCAB_ARRAYS:   # read into the tokenizer and the facts: the copies would stay unread
            gguf.metadata.pop(key, None)

    @classmethod
    def load(cls, model: str, n_ctx: int = 0, n_threads: int = 0, parallel: int = 1, cache_slots: int = 2,
             max_queue: int = 16, n_batch: int = 512, tool_format: str | None = None, mmproj: str | None = None,
             max_image_bytes: int = 20 << 20, max_image_pixels: int = 50_000_000,
             speculative: bool = True, spec: Spec | None = None, engine=None, draft_model: str | None = None,
             draft_max: int = config.DEFAULT_DRAFT_MAX, kv_cache_type: str = "f16") -> "ServedModel":
        """Resolves (pulling if needed) and loads a model, and starts its engine thread. mmproj: a
        projector file for images; None pairs one found beside the model; config.NO_MMPROJ: none.
        spec: the catalog entry it is served as (default: the file under its registry name). engine:
        what serves its requests, built with scheduler.build's arguments (default: that, in this
        process; cluster.engine.RayEngine stands in for it on a Ray cluster). draft_model: name or
        path of a small model with the same vocabulary that guesses up to draft_max tokens at a
        time for speculative decoding (refused if its vocabulary differs). kv_cache_type: f16, q8_0 or q4_0."""
        t0 = time.monotonic_ns()
        path = spec.path if spec is not None else store.resolve(model)
        with reading(path):
            gguf = GGUFFile(path)
        if is_encoder(gguf.metadata):   # embeddings only: its own engine thread, no chat
            from tensorsharp.server.encoder_model import EncoderModel
            return EncoderModel.load_file(path, gguf, t0, n_ctx=n_ctx, n_threads=n_threads, max_queue=max_queue,
                                          n_batch=n_batch, spec=spec)
        draft = _draft(path, gguf, draft_model) if draft_model and speculative else None
        with reading(path):
            transformer = load_model(gguf)
            tokenizer = shared_tokenizer(path, gguf.metadata)
        images = _images(path, mmproj, transformer.hparams.n_embd, n_threads, max_image_bytes, max_image_pixels)
        train = transformer.hparams.n_ctx_train
        n_ctx = min(n_ctx, train) if n_ctx > 0 else train
        build = engine or sched.build
        scheduler = build(transformer, tokenizer, n_ctx, parallel=parallel, cache_slots=cache_slots,
                          max_queue=max_queue, n_batch=n_batch, n_threads=n_threads, speculative=speculative,
                          draft=draft, draft_max=draft_max, kv_cache_type=kv_cache_type)
        with reading(path):   # the chat template and constraint vocabulary come from the file too
            served = cls(path, gguf, transformer, tokenizer, scheduler, time.monotonic_ns() - t0, tool_format, images,
                         spec)
        scheduler.start()
        return served

    def close(self) -> None:
        self.scheduler.close()

    # -- facts -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """What the APIs list, with Ollama's default tag, since Ollama clients check a model's
        name against that list."""
        return self.spec.name

    @property
    def n_ctx(self) -> int:
        return self.scheduler.n_ctx

    @property
    def memory_bytes(self) -> int:
        """What it holds: the weights (the file), the KV cache of every slot, the vocabulary's
        tables and working buffers, the constraint vocabulary once a request built it, and its
        draft model's file and KV cache."""
        drafter = getattr(self.scheduler, "drafter", None)   # a Ray engine keeps its drafts on its replicas
        return (self.facts.held_bytes(self.file_size, self.scheduler.cache.nbytes, has_lltokenizer(self.tokenizer))
                + (drafter.nbytes if drafter is not None else 0))

    @property
    def architecture(self) -> str:
        return self.facts.architecture

    @property
    def parameter_count(self) -> int:
        return self.facts.parameter_count

    @property
    def parameter_size(self) -> str:
        return self.facts.parameter_size

    @property
    def quantization(self) -> str:
        return self.facts.quantization

    @property
    def file_size(self) -> int:
        return self.spec.file_size

    @property
    def modified_at(self) -> datetime:
        return self.spec.modified_at

    @property
    def supports_tools(self) -> bool:
        return self.chat.supports_tools

    @property
    def supports_thinking(self) -> bool:
        return self.chat.supports_thinking

    @property
    def supports_images(self) -> bool:
        return self.images is not None

    @property
    def pooling(self) -> str:
        """How the model's final hidden states pool into an embedding: the GGUF's pooling type
        (embedding models carry one), else mean, where every position of a causal model counts."""
        kind = self.metadata.get(f"{self.architecture}.pooling_type")
        return {2: "cls", 3: "last", 4: "rank"}.get(kind, "mean")

    @property
    def capabilities(self) -> list[str]:
        """What the model can be asked for, in Ollama's words (/api/show, /v1/models)."""
        return list(self.facts.capabilities)

    # -- prompts ---------------------------------------------------------------------------------
    def render(self, messages: list[dict], tools: list | None = None, think: bool | None = None,
               reasoning_effort: str | None = None) -> str:
        # What clients wrote stays text: a "<|im_start|>" in a message cannot open a turn.
        messages = [{k: self._quoted(v) for k, v in m.items()} for m in messages]
        tools = self._quoted(tools)
        return self.chat.render(self.template, messages, tools, think, reasoning_effort)

    def _quoted(self, value):
        """value with every string in it (not dict keys) passed through Tokenizer.quote."""
        if isinstance(value, str):
            return self.tokenizer.quote(value)
        if isinstance(value, dict):
            return {k: self._quoted(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._quoted(v) for v in value]
        return value

    def tokenize_prompt(self, text: str) -> list[int]:
        """Ids of a prompt text: special tokens parsed, BOS added unless the text starts with it."""
        bos = self.tokenizer.bos_id
        has_bos = bos is not None and text.startswith(self.tokenizer.token_text(bos))
        return self.tokenizer.encode(text, add_special=not has_bos, parse_special=True)

    def check_ids(self, ids: list[int]) -> None:
        bad = next((t for t in ids if not 0 <= t < self.tokenizer.vocab_size), None)
        if bad is not None:
            raise ValueError(f"token id {bad} is outside the vocabulary (size {self.tokenizer.vocab_size})")


def _draft(target_path: Path, target: GGUFFile, name: str):
    """The Transformer of the draft model `name` (pulled if needed), refused unless its
    vocabulary is the target's."""
    path = store.resolve(name)
    with reading(path):
        gguf = GGUFFile(path)
        check_vocab(target.metadata, gguf.metadata, target_path.name, path.name)
        return load_model(gguf)


def _images(model_path: Path, mmproj: str | None, n_embd: int, n_threads: int, max_bytes: int,
            max_pixels: int) -> ImageEmbedder | None:
    """The image encoder named by mmproj or found beside the model, checked against its width."""
    if mmproj == config.NO_MMPROJ:
        return None
    path = Path(mmproj).expanduser() if mmproj else find_projector(model_path)
    if path is None:
        return None
    encoder = load_projector(path, n_threads=n_threads)
    if encoder.n_embd != n_embd:
        raise TensorSharpError(f"projector {path.name} makes embeddings of width {encoder.n_embd}, but "
                               f"{model_path.name} takes {n_embd}: they are not a pair")
    return ImageEmbedder(encoder, path, image_format(encoder.projector_type), max_bytes, max_pixels)
