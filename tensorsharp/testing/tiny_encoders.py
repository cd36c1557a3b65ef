"""Tiny random HF encoders (bert, nomic-bert) on BERT's real vocabulary, converted by llama.cpp's
converter with sentence-transformers' pooling files; needs the `hf` extra, imported by tests and tools."""
from __future__ import annotations

import json
from pathlib import Path

from tensorsharp.testing import llama_convert, tiny_gguf

# sentence-transformers' Pooling config key per pooling, and the one each tiny family is built with.
POOLING_KEYS = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens"}
FAMILY_POOLING = {"bert": "cls", "nomic-bert": "mean"}


def pooling_files(mode: str) -> dict[str, str]:
    """modules.json and the Pooling module's config, as a sentence-transformers upload has them."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    return {"modules.json": json.dumps(modules), "1_Pooling/config.json": json.dumps({POOLING_KEYS[mode]: True})}


def model(family: str):
    """The float32 HF model of a tiny `family` encoder (fixed seed)."""
    import transformers

    common = dict(vocab_size=llama_convert.BERT_VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=96)
    if family == "bert":
        config = transformers.BertConfig(**common, max_position_embeddings=128, type_vocab_size=2)
    elif family == "nomic-bert":
        config = transformers.NomicBertConfig(**common)
    else:
        raise KeyError(f"no tiny encoder of family {family!r}")
    return tiny_gguf.random_encoder(config, seed=21)


def converted(family: str, outtype: str = "f32") -> tuple[object, Path]:
    """(HF model, its GGUF file with weights in outtype), the file pooling as FAMILY_POOLING says."""
    m = model(family)
    return m, llama_convert.convert(m, outtype=outtype, files=pooling_files(FAMILY_POOLING[family]))
