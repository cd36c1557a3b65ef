"""Tiny HF models converted to GGUF by llama.cpp's own convert_hf_to_gguf.py.

The converter comes from the llama-cpp-python sdist on PyPI (its vendored llama.cpp and gguf-py),
so a file has exactly the tensor names, metadata and layouts of a real download. The sdist's
converter files, its copies of real models' chat templates and the converted tiny models are cached
under the store home. Needs torch,
transformers and sentencepiece (the `hf` extra); imported by tests, not by the package.
"""
from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tensorsharp import config

SDIST = ("llama-cpp-python", "0.3.36")
# What the converter needs of the sdist: the script, its per-family package and gguf-py.
_MEMBERS = ("vendor/llama.cpp/convert_hf_to_gguf.py", "vendor/llama.cpp/conversion/",
            "vendor/llama.cpp/gguf-py/")
_CPP_TEMPLATES = "tests/test-chat-template.cpp"
_TEMPLATE_MEMBERS = ("vendor/llama.cpp/models/templates/", "vendor/llama.cpp/" + _CPP_TEMPLATES)
# Families whose converter reads only a byte-level BPE tokenizer.json (and recognizes its
# pre-tokenizer by the ids it gives a fixed text, so it must be a real model's). Their models need
# a vocabulary of at least BPE_VOCAB tokens.
BPE_FAMILIES = ("olmo2", "olmo3", "qwen2_moe", "qwen3_moe", "gpt_oss")
BPE_VOCAB = 49152
# Encoder families whose converter reads a WordPiece vocab.txt; their models need BERT's 30522 tokens.
WORDPIECE_FAMILIES = ("bert", "nomic_bert")
BERT_VOCAB = 30522
# Words the tiny SentencePiece vocabulary is trained on; token ids are all the tests use.
_CORPUS = [f"the quick brown fox jumps over the lazy dog {i} times, said {w}"
           for i in range(64) for w in ("alice", "bob", "carol")]


def cache_dir() -> Path:
    return config.home() / "llama-convert"


def converter() -> Path:
    """The directory holding convert_hf_to_gguf.py, conversion/ and gguf-py/ (fetched once)."""
    return _extracted("", _MEMBERS, "convert_hf_to_gguf.py")


def chat_template(name: str) -> str:
    """A real model's chat template as llama.cpp's source keeps it: models/templates/<name>.jinja,
    or an entry of tests/test-chat-template.cpp named `name` (where the Phi-4 template lives)."""
    root = _extracted("-templates", _TEMPLATE_MEMBERS, _CPP_TEMPLATES)
    path = root / "models" / "templates" / f"{name}.jinja"
    if path.is_file():
        return path.read_text()
    # Entries read `/* .name= */ "<name>",` then `/* .template_str= */ "<C string>",`.
    for entry_name, literal in re.findall(r'/\* \.name= \*/ "([^"]*)",\s*/\* \.template_str= \*/ ("(?:[^"\\]|\\.)*")',
                                          (root / _CPP_TEMPLATES).read_text()):
        if entry_name == name:
            return ast.literal_eval(literal)
    raise KeyError(f"llama.cpp {SDIST[1]} holds no chat template named {name!r}")


def _sdist() -> Path:
    name, version = SDIST
    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    sdist = downloads / f"{name.replace('-', '_')}-{version}.tar.gz"
    if not sdist.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", f"{name}=={version}", "--no-binary", ":all:",
                        "--no-deps", "-q", "-d", str(downloads), *config.pip_args()], check=True)
    return sdist


def _extracted(suffix: str, members: tuple[str, ...], check: str) -> Path:
    """The members of the sdist's vendor/llama.cpp/ (files, or folders ending in "/"), extracted
    once into their own cache folder, which holds `check` when complete."""
    name, version = SDIST
    root = cache_dir() / f"{name}-{version}{suffix}"
    if (root / check).is_file():
        return root
    sdist = _sdist()
    tmp = Path(tempfile.mkdtemp(dir=cache_dir()))
    prefix = f"{name.replace('-', '_')}-{version}/"
    with tarfile.open(sdist) as tar:
        for m in tar.getmembers():
            rel = m.name[len(prefix):] if m.name.startswith(prefix) else ""
            wanted = any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in members)
            if m.isfile() and wanted and ".." not in Path(rel).parts:
                dest = tmp / rel[len("vendor/llama.cpp/"):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(tar.extractfile(m).read())
    if not (tmp / check).is_file():
        raise RuntimeError(f"{sdist} holds no vendor/llama.cpp/{check}")
    try:
        tmp.rename(root)
    except OSError:  # another process got there first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def bert_vocab() -> list[str]:
    """BERT's uncased WordPiece vocabulary (vocab.txt lines), from the llama.cpp sdist's vocab test
    file of bge-small: the converter recognizes a BERT tokenizer by the ids it gives a fixed text,
    so a tiny model needs a real vocabulary."""
    import gguf

    member = "models/ggml-vocab-bert-bge.gguf"
    root = _extracted("-bert-vocab", ("vendor/llama.cpp/" + member,), member)
    # A vocabulary-only file ends before the alignment padding our reader insists on; gguf-py's does not.
    fields = gguf.GGUFReader(root / member).fields
    texts = fields["tokenizer.ggml.tokens"].contents()
    types = fields["tokenizer.ggml.token_type"].contents()
    # The file's phantom-space form back to vocab.txt's. It predates the converter's phantom step for
    # BERT's reserved [unusedN] tokens, which it keeps as they are.
    control = 3  # gguf.TokenType.CONTROL
    return [t if ty == control or re.fullmatch(r"\[unused\d+\]", t) else t[1:] if t.startswith("\u2581") else "##" + t
            for t, ty in zip(texts, types)]


def write_wordpiece_tokenizer(directory: Path) -> None:
    """vocab.txt, tokenizer.json and tokenizer_config.json of an uncased BERT tokenizer."""
    from tokenizers.implementations import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(bert_vocab()) + "\n")
    words = BertWordPieceTokenizer(str(vocab), lowercase=True)
    BertTokenizerFast(tokenizer_object=words._tokenizer, do_lower_case=True, unk_token="[UNK]", sep_token="[SEP]",
                      pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]").save_pretrained(directory)


def write_nomic_bert(model, directory: Path) -> None:
    """An HF NomicBertModel saved as nomic-ai's own checkpoints lay it out (config keys, fused Wqkv,
    fc11/fc12/fc2), the form llama.cpp's converter reads."""
    import torch
    from safetensors.torch import save_file

    c = model.config
    config = {"architectures": ["NomicBertModel"], "model_type": "nomic_bert", "vocab_size": c.vocab_size,
              "n_embd": c.hidden_size, "n_head": c.num_attention_heads, "n_layer": c.num_hidden_layers,
              "n_inner": c.intermediate_size, "layer_norm_epsilon": c.layer_norm_eps,
              "type_vocab_size": c.type_vocab_size, "n_positions": 8192, "max_trained_positions": 2048,
              "activation_function": "swiglu", "causal": False, "qkv_proj_bias": False, "mlp_fc1_bias": False,
              "mlp_fc2_bias": False, "prenorm": False, "rotary_emb_fraction": 1.0, "rotary_emb_interleaved": False,
              "rotary_emb_scale_base": None, "rotary_emb_base": c.rope_parameters["rope_theta"]}
    # The converter reads the config through transformers, which knows nomic_bert by HF's own keys.
    config.update({k: getattr(c, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                              "intermediate_size", "layer_norm_eps")})
    sd = model.state_dict()
    out = {"embeddings.word_embeddings.weight": sd["embeddings.word_embeddings.weight"],
           "embeddings.token_type_embeddings.weight": sd["embeddings.token_type_embeddings.weight"],
           "emb_ln.weight": sd["embeddings.LayerNorm.weight"], "emb_ln.bias": sd["embeddings.LayerNorm.bias"]}
    for i in range(c.num_hidden_layers):
        hf, ours = f"layers.{i}.", f"encoder.layers.{i}."
        out[ours + "attn.Wqkv.weight"] = torch.cat([sd[hf + f"self_attn.{x}_proj.weight"] for x in "qkv"])
        out[ours + "attn.out_proj.weight"] = sd[hf + "self_attn.o_proj.weight"]
        out[ours + "mlp.fc11.weight"] = sd[hf + "mlp.up_proj.weight"]
        out[ours + "mlp.fc12.weight"] = sd[hf + "mlp.gate_proj.weight"]
        out[ours + "mlp.fc2.weight"] = sd[hf + "mlp.down_proj.weight"]
        for norm, name in (("norm1", "post_attention_layernorm"), ("norm2", "post_mlp_layernorm")):
            for part in ("weight", "bias"):
                out[f"{ours}{norm}.{part}"] = sd[f"{hf}{name}.{part}"]
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config))


def sentencepiece_model(vocab_size: int) -> bytes:
    """A SentencePiece BPE tokenizer.model of at most vocab_size pieces (with byte fallback; the
    converter pads the vocabulary to the model's size)."""
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_CORPUS), model_writer=out, vocab_size=vocab_size,
                                   model_type="bpe", byte_fallback=True, hard_vocab_limit=False,
                                   character_coverage=1.0, num_threads=1, minloglevel=2)
    return out.getvalue()


def write_bpe_tokenizer(directory: Path, special_tokens: tuple[str, ...] = ()) -> None:
    """tokenizer.json and tokenizer_config.json of SmolLM2's byte-level BPE (from the store's
    SmolLM2 GGUF: vocabulary, merges and SmolLM's digit-splitting pre-tokenizer), which the
    converter knows as "smollm". special_tokens: more special tokens, after SmolLM2's 49152 (a
    family's markers, such as harmony's <|channel|>)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    from tensorsharp.gguf import GGUFFile
    from tensorsharp.testing.models import model_path

    with GGUFFile(model_path("smollm2-135m")) as f:
        md = f.metadata
        tokens, types = list(md["tokenizer.ggml.tokens"]), list(md["tokenizer.ggml.token_type"])
        merges = [tuple(m.split(" ", 1)) for m in md["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    control = 3  # gguf.TokenType.CONTROL
    tok.add_special_tokens([AddedToken(t, special=True) for t, ty in zip(tokens, types) if ty == control])
    tok.add_special_tokens([AddedToken(t, special=True) for t in special_tokens])
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": tokens[0], "eos_token": tokens[0]}))


def _fingerprint(model, files: dict[str, str], special_tokens: tuple[str, ...] = ()) -> str:
    h = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    h.update(" ".join(SDIST).encode())
    h.update(json.dumps(files, sort_keys=True).encode())
    if special_tokens:   # as before for the files built without
        h.update(json.dumps(special_tokens).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def convert(model, outtype: str = "f32", files: dict[str, str] | None = None,
            special_tokens: tuple[str, ...] = ()) -> Path:
    """The GGUF file convert_hf_to_gguf.py makes of HF model (weights in outtype: f32, f16, bf16,
    q8_0), built once per model and cached by the model's config and weights. files: more files of
    the HF directory (relative path -> text), such as sentence-transformers' modules.json or a
    chat_template.jinja. special_tokens: control tokens a BPE family's tokenizer adds after its
    vocabulary (the model's vocab_size must leave room for them)."""
    files = files or {}
    if special_tokens and model.config.model_type not in BPE_FAMILIES:
        raise ValueError("special_tokens are added to the BPE families' tokenizer only")
    fingerprint = _fingerprint(model, files, special_tokens)
    out = cache_dir() / "models" / f"{model.config.model_type}-{fingerprint}-{outtype}.gguf"
    if out.is_file():
        return out
    conv = converter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        src = Path(tmp) / "hf"
        if model.config.model_type == "nomic_bert":
            write_nomic_bert(model, src)
        else:
            model.save_pretrained(src)
        for name, text in files.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(text)
        if model.config.model_type in BPE_FAMILIES:
            write_bpe_tokenizer(src, special_tokens)
        elif model.config.model_type in WORDPIECE_FAMILIES:
            write_wordpiece_tokenizer(src)
        else:
            (src / "tokenizer.model").write_bytes(sentencepiece_model(model.config.vocab_size))
        part = Path(tmp) / out.name
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(conv / "gguf-py"), os.environ.get("PYTHONPATH", "")]))
        run = subprocess.run([sys.executable, str(conv / "convert_hf_to_gguf.py"), str(src), "--outtype", outtype,
                              "--outfile", str(part)], env=env, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"convert_hf_to_gguf.py failed on {model.config.model_type}:\n{run.stderr[-4000:]}")
        part.replace(out)
    return out


def requantize(path: Path, qtype: str, suffixes: tuple[str, ...]) -> Path:
    """A copy of the converted file whose tensors ending in one of suffixes are quantized to qtype
    by gguf.quants (as llama-quantize would store them: rows of the innermost dimension), from F32 or
    from any type gguf.quants dequantizes (then rounded twice), everything else as it is. The
    converter writes MXFP4 only when the HF weights already are, so this is how a random model's
    experts become MXFP4."""
    import gguf
    import numpy as np

    out = path.with_name(f"{path.stem}-{qtype.lower()}-{hashlib.sha256(repr(suffixes).encode()).hexdigest()[:8]}.gguf")
    if out.is_file():
        return out
    q = gguf.GGMLQuantizationType[qtype]
    reader = gguf.GGUFReader(path)
    part = out.with_suffix(".part")
    writer = gguf.GGUFWriter(str(part), reader.fields["general.architecture"].contents())
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub)
    for t in reader.tensors:
        data = np.asarray(t.data)
        if t.name.endswith(suffixes) and t.tensor_type != q:
            if t.tensor_type != gguf.GGMLQuantizationType.F32:
                data = gguf.quants.dequantize(data, t.tensor_type)
            writer.add_tensor(t.name, gguf.quants.quantize(data, q), raw_dtype=q)
        else:
            writer.add_tensor(t.name, data, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    part.replace(out)
    return out
