"""The models a server can serve, without loading any: the store's files, the files named at
start, and the models made by /api/create and /api/copy, each with the names requests may use
and the facts listings show (read from the GGUF header, cached per file version)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tensorsharp import config, manifests, store
from tensorsharp.chat.output import chat_format
from tensorsharp.chat.template import ChatTemplate, template_source
from tensorsharp.engine.kv_cache import bytes_from_f16
from tensorsharp.errors import TensorSharpError
from tensorsharp.gguf import GGUFFile
from tensorsharp.models import ARCHITECTURES, is_encoder, reading
from tensorsharp.tokenizer import Tokenizer
from tensorsharp.vision import find_projector

# llama.cpp's llama_ftype numbers (GGUF general.file_type) and the names clients show.
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}


def size_label(n: int) -> str:
    """135M, 1.5B: how model sizes are written."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f}{unit}" if v >= 10 or v.is_integer() else f"{v:.1f}{unit}"
    return str(n)


@dataclass(frozen=True)
class Spec:
    """One servable model: the file it runs and what its name adds to each request."""
    name: str                           # as listed, with a tag ("smollm2-135m:latest")
    path: Path
    keys: frozenset                     # manifests.key() of every name a request may use
    digest: str = ""                    # sha256 of the file when the registry knows it
    system: str | None = None
    template: str | None = None
    parameters: dict = field(default_factory=dict)
    created: bool = False               # made by /api/create or /api/copy (deleting removes only the name)

    @property
    def file_size(self) -> int:
        return self.path.stat().st_size

    @property
    def modified_at(self) -> datetime:
        return datetime.fromtimestamp(self.path.stat().st_mtime, timezone.utc)


# What a loaded model holds besides its file and KV cache, measured (RssAnon after gc and
# malloc_trim: tools/bench_models.py --calibrate) on smollm2-135m (49k tokens, 49k merges: 18 MB
# of tables, 17 MB of constraint vocabulary), gemma3-270m (262k tokens: 60 MB, 106 MB) and
# qwen2.5-coder-0.5b (152k tokens, 151k merges: 51 MB, 53 MB), rounded up about 10%: the
# vocabulary's tables (texts, ids, scores, attributes, pieces) and BPE merge ranks (a fit of
# 238 and 118 bytes), the engine's activation and logits buffers (4-6 MB at its first request),
# and llguidance's token trie and slices (363-424 bytes a token).
VOCAB_TOKEN_BYTES = 256
MERGE_BYTES = 128
WORKING_BYTES = 8 << 20
CONSTRAINT_TOKEN_BYTES = 464


@dataclass(frozen=True)
class Facts:
    """What a model's GGUF header says, for listings (defaults: the file is not readable)."""
    architecture: str = ""
    parameter_count: int = 0
    parameter_size: str = ""
    quantization: str = "unknown"
    context_length: int = 0
    capabilities: tuple = ("completion",)   # Ollama's words: completion, embedding, tools, thinking, vision
    kv_bytes_per_token: int = 0             # K and V (f16) of every layer for one position of one slot
    n_vocab: int = 0
    n_merges: int = 0                       # BPE merge rules (0 for SentencePiece)

    def memory_bytes(self, file_size: int, n_ctx: int, n_seq: int, kv_cache_type: str = "f16") -> int:
        """What loading takes: the weights (the file), a KV cache of n_seq slots of n_ctx
        (0: the training context) positions of kv_cache_type, and what held_bytes adds."""
        n_ctx = min(n_ctx, self.context_length) if n_ctx > 0 else self.context_length   # as ServedModel.load
        kv = bytes_from_f16(self.kv_bytes_per_token * n_ctx * n_seq, kv_cache_type)
        return self.held_bytes(file_size, kv, False)

    def held_bytes(self, file_size: int, kv_bytes: int, constrained: bool) -> int:
        """The process memory a loaded model holds: its file (mapped, every page read once the
        model has run), its KV cache, the vocabulary's Python tables, working buffers, and
        (constrained: once a request built it) llguidance's copy of the vocabulary."""
        held = file_size + kv_bytes + VOCAB_TOKEN_BYTES * self.n_vocab + MERGE_BYTES * self.n_merges + WORKING_BYTES
        return held + (self.constraint_bytes if constrained else 0)

    @property
    def constraint_bytes(self) -> int:
        """llguidance's copy of the vocabulary, which the first constrained request builds."""
        return CONSTRAINT_TOKEN_BYTES * self.n_vocab


def facts_of(gguf: GGUFFile, template: str | None = None, vision: bool = False) -> Facts:
    """The facts of an open GGUF file (template: the chat template used instead of the file's)."""
    md = gguf.metadata
    arch = str(md.get("general.architecture", ""))
    count = sum(math.prod(int(d) for d in t.shape) for t in gguf.tensors.values())
    ftype = md.get("general.file_type")
    fmt = chat_format(md, template or template_source(md))
    kv = 0
    if arch in ARCHITECTURES:
        hp = ARCHITECTURES[arch](md).hparams(0)
        kv = 2 * 2 * hp.n_layer * hp.n_head_kv * hp.head_dim
    # "embedding": trained to embed (the file names a pooling); any model still answers embedding requests.
    embeds = md.get(f"{arch}.pooling_type") not in (None, 0)
    caps = ["completion"] + [c for c, on in (("embedding", embeds), ("tools", fmt.supports_tools),
                                             ("thinking", fmt.supports_thinking), ("vision", vision)) if on]
    if is_encoder(md):   # an encoder embeds and generates nothing
        caps = ["embedding"]
    return Facts(arch, count, str(md.get("general.size_label") or size_label(count)),
                 FILE_TYPES.get(int(ftype), f"type {ftype}") if ftype is not None else "unknown",
                 int(md.get(f"{arch}.context_length", 0) or 0), tuple(caps), kv,
                 len(md.get("tokenizer.ggml.tokens") or ()), len(md.get("tokenizer.ggml.merges") or ()))


def read_facts(spec: Spec) -> Facts:
    """Facts of a spec's file without loading it (up to a second on a large vocabulary: call off the hub)."""
    try:
        with reading(spec.path):
            return facts_of(GGUFFile(spec.path), spec.template, find_projector(spec.path) is not None)
    except (TensorSharpError, OSError):
        return Facts()


def file_spec(path: Path) -> Spec:
    """The spec of a model file: a file of the store under its registry name, any other under its basename."""
    registry = None
    if path.parent == config.models_dir():
        registry = next((m for m in store.known_models() if m.file == path.name), None)
    base = registry.name if registry is not None else path.stem
    keys = {path.name.lower(), path.stem.lower(), base}
    if registry is not None:
        keys.update(registry.aliases)
    return Spec(manifests.canonical(base), path, frozenset(manifests.key(k) for k in keys),
                registry.sha256 if registry is not None else "")


class Header:
    """A model as /api/show describes it, read from its file without loading the weights (the
    vocabulary is parsed: up to a second for a large one, so build it off the hub)."""

    def __init__(self, spec: Spec, n_ctx: int):
        with reading(spec.path):
            gguf = GGUFFile(spec.path)
            self.tokenizer = Tokenizer.from_metadata(gguf.metadata)
            self.template = ChatTemplate.for_model(with_template(gguf.metadata, spec.template), self.tokenizer)
            self.facts = facts_of(gguf, self.template.source, find_projector(spec.path) is not None)
        self.spec, self.path, self.metadata = spec, spec.path, gguf.metadata
        train = self.facts.context_length
        self.n_ctx = min(n_ctx, train) if n_ctx > 0 else train   # what it would load with


def with_template(metadata: dict, template: str | None) -> dict:
    """A file's metadata with a created model's chat template in place of its own."""
    return metadata if template is None else {**metadata, "tokenizer.chat_template": template}


class Catalog:
    """Re-read on every call (a directory listing and a few small JSON files), so models pulled,
    created or deleted by another process show up without a restart."""

    def __init__(self, extra: list[Path] = ()):
        self.extra = [Path(p) for p in extra]   # files named at start, wherever they are
        self._facts: dict[tuple, Facts] = {}

    def specs(self) -> list[Spec]:
        found: dict[str, Spec] = {}
        for m in manifests.all_manifests():
            if m.file.is_file():   # a copy whose file was deleted is gone too
                found[m.name] = Spec(m.name, m.file, frozenset({manifests.key(m.name)}), "", m.system,
                                     m.template, m.parameters, created=True)
        stored = [c.path for c in store.list_models()]
        for path in stored + [p for p in self.extra if p not in stored]:
            spec = file_spec(path)
            found.setdefault(spec.name, spec)
        return sorted(found.values(), key=lambda s: s.name)

    def find(self, name: str) -> Spec | None:
        k = manifests.key(name)
        return next((s for s in self.specs() if k in s.keys), None)

    def facts(self, spec: Spec) -> Facts:
        st = spec.path.stat()
        version = (str(spec.path), st.st_size, st.st_mtime_ns, st.st_ino, spec.template)
        if version not in self._facts:
            self._facts[version] = read_facts(spec)
        return self._facts[version]
