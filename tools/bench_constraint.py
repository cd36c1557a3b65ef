"""Cost of constrained decoding: LLTokenizer build per model, mask time per token (also of an
auto tool reply's lazy constraint while the model writes free text), and the
schema acceptance run (SCHEMA_CASES x samples) with its forward / mask / sampling split.

    python tools/bench_constraint.py [--models smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b] [--samples 20]
    python tools/bench_constraint.py --harmony-vocab 201088 --models '' --schemas-model ''

--harmony-vocab N times GPT-OSS's auto tool constraint per token on a vocabulary of N tokens (its
real o200k_harmony has 201,088): Qwen2.5's byte-level BPE, harmony's markers as control tokens and
tokens that join two of its own up to N (no o200k file can be had here; what the mask costs
follows the vocabulary's size and its byte trie, which this keeps realistic).

--json-object asks the same tasks for any JSON object (OpenAI json_object), and --json-whitespace
REGEX lets that whitespace between tokens, e.g. llama.cpp's '( |\\n[ \\t]{0,20})', to compare with
the compact JSON the constraints require (see JSON_OPTIONS in tensorsharp/engine/constraint.py).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from tensorsharp.chat.schema import schema_instruction, validate_output
from tensorsharp.chat.template import ChatTemplate
from tensorsharp.engine import constraint
from tensorsharp.chat.tool_parsers import harmony
from tensorsharp.engine.constraint import (harmony_lazy_call_constraint, json_schema_constraint,
                                           lazy_tool_call_constraint, lltokenizer)
from tensorsharp.engine.sampler import SamplingParams
from tensorsharp.gguf import GGUFFile
from tensorsharp.llm import Model
from tensorsharp.testing.constrained import SCHEMA_CASES, Timings, generate_batch
from tensorsharp.testing.models import model_path
from tensorsharp.tokenizer import Tokenizer


_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
_PROSE = ("The weather in Paris is mild in spring, with showers that come and go. Pack a light coat, "
          "and an umbrella: {\"city\": \"Paris\"} is how the forecast service names it.\n") * 4


def bench_tokenizer(name: str) -> None:
    tok = Tokenizer.from_metadata(GGUFFile(model_path(name)).metadata)
    t0 = time.perf_counter()
    lltokenizer(tok)
    build = time.perf_counter() - t0
    # Mask cost in the two regimes that matter: at a structural position (few tokens allowed)
    # and inside a free string (nearly all allowed).
    mask = np.zeros((tok.vocab_size + 31) // 32, np.uint32)
    times = {}
    for label, text in (("start", ""), ("in string", '{"s": "abc')):
        c = json_schema_constraint(tok, {"type": "object", "properties": {"s": {"type": "string"}}})
        for t in tok.encode(text, add_special=False):
            c.fill_mask(mask)
            c.accept(t)
        t0 = time.perf_counter()
        for _ in range(50):
            c.fill_mask(mask)
        times[label] = (time.perf_counter() - t0) / 50 * 1e6
    # An auto tool reply while it is free text (no call opened): what the lazy constraint costs a
    # reply that never calls a tool, per token, mask and accept together.
    c = lazy_tool_call_constraint(tok, [_TOOL], trigger="<tool_call>", prefix="<tool_call>\n",
                                  suffix="\n</tool_call>", bare_start=True, bare_openings=("```json",))
    ids = tok.encode(_PROSE, add_special=False)
    t0 = time.perf_counter()
    for t in ids:
        c.fill_mask(mask)
        c.accept(t)
    times["lazy tools, free text (mask+accept)"] = (time.perf_counter() - t0) / len(ids) * 1e6
    print(f"{name}: vocab {tok.vocab_size}, LLTokenizer build {build:.2f} s, fill_mask "
          + ", ".join(f"{k} {v:.0f} us" for k, v in times.items()))


def harmony_tokenizer(n_vocab: int, base: str = "qwen2.5-coder-0.5b") -> Tokenizer:
    """base's tokenizer with harmony's markers as control tokens, grown to n_vocab tokens by ones
    that join two of its normal tokens (tokens its merges never make, as a bigger BPE's rarest)."""
    md = dict(GGUFFile(model_path(base)).metadata)
    tokens, types = list(md["tokenizer.ggml.tokens"]), list(md["tokenizer.ggml.token_type"])
    known = set(tokens)
    for marker in harmony.MARKERS:
        if marker not in known:
            tokens.append(marker)
            types.append(3)   # CONTROL
    normal = [t for t, ty in zip(tokens, types) if ty == 1]
    rng = np.random.default_rng(0)
    while len(tokens) < n_vocab:
        joined = normal[rng.integers(len(normal))] + normal[rng.integers(len(normal))]
        if joined not in known:
            known.add(joined)
            tokens.append(joined)
            types.append(1)
    md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"] = tokens, types
    return Tokenizer.from_metadata(md)


def bench_harmony(n_vocab: int) -> None:
    """GPT-OSS's auto tool reply while it writes messages and no call: mask and accept per token."""
    tok = harmony_tokenizer(n_vocab)
    t0 = time.perf_counter()
    lltokenizer(tok)
    build = time.perf_counter() - t0
    mask = np.zeros((tok.vocab_size + 31) // 32, np.uint32)
    text = (f"{harmony.CHANNEL}analysis{harmony.MESSAGE}{_PROSE}{harmony.END}{harmony.START}assistant"
            f"{harmony.CHANNEL}final{harmony.MESSAGE}{_PROSE}")
    ids = [t for frag in tok.vocab.partition(text, parse_special=True)
           for t in ([frag] if isinstance(frag, int) else tok.encode(frag, add_special=False))]
    per_token = []
    for _ in range(3):
        c = harmony_lazy_call_constraint(tok, [_TOOL])
        t0 = time.perf_counter()
        for t in ids:
            c.fill_mask(mask)
            c.accept(t)
        per_token.append((time.perf_counter() - t0) / len(ids) * 1e6)
    print(f"harmony on {tok.vocab_size} tokens: LLTokenizer build {build:.2f} s, auto tools while free "
          f"(mask+accept) {np.median(per_token):.0f} us/token over {len(ids)} tokens (median of 3)")


def bench_schemas(name: str, samples: int, temperature: float, max_tokens: int, seed: int,
                  json_object: bool = False) -> None:
    model = Model(name, n_ctx=2048)
    template = ChatTemplate.for_model(model.gguf.metadata, model.tokenizer)
    timings = Timings()
    failures = 0
    t_all = time.perf_counter()
    for i, (task, schema) in enumerate(SCHEMA_CASES):
        prompt = model.tokenize_prompt(template.render(
            [{"role": "system", "content": schema_instruction(schema)}, {"role": "user", "content": task}]))
        wanted = None if json_object else schema
        constraints = [json_schema_constraint(model.tokenizer, wanted) for _ in range(samples)]
        t0 = time.perf_counter()
        outs = generate_batch(model, prompt, constraints, max_tokens,
                              SamplingParams(temperature=temperature, seed=seed + 1000 * i), timings)
        bad = 0
        for o in outs:
            try:
                if not o.done:
                    raise ValueError("cut off by max_tokens")
                validate_output(o.text, wanted)
            except Exception as e:  # noqa: BLE001 - reported, not raised: this is a survey
                bad += 1
                print(f"  case {i} failed: {e}: {o.text[:120]!r}")
        failures += bad
        print(f"case {i:2d}: {samples - bad}/{samples} valid, {time.perf_counter() - t0:.1f} s, "
              f"e.g. {outs[0].text[:70]!r}")
    total = time.perf_counter() - t_all
    print(f"{name}: {len(SCHEMA_CASES)} schemas x {samples}: {failures} failures, {total:.1f} s total; "
          f"forward {timings.forward_s:.1f} s, mask+accept {timings.mask_s:.1f} s "
          f"({timings.mask_s / max(timings.tokens, 1) * 1e6:.0f} us/token), sampling {timings.sample_s:.1f} s, "
          f"{timings.tokens} tokens in {len(timings.steps)} steps")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b")
    ap.add_argument("--schemas-model", default="smollm2-135m", help="model for the schema run ('' skips it)")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--max-tokens", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0, help="sample s of case i uses seed + 1000*i + s")
    ap.add_argument("--json-object", action="store_true", help="any JSON object instead of each case's schema")
    ap.add_argument("--json-whitespace", metavar="REGEX", help="whitespace allowed between JSON tokens")
    ap.add_argument("--harmony-vocab", type=int, help="time GPT-OSS's auto tool constraint on this many tokens")
    args = ap.parse_args()
    if args.json_whitespace is not None:
        constraint.JSON_OPTIONS = {"whitespace_flexible": True, "whitespace_pattern": args.json_whitespace}
    for name in filter(None, args.models.split(",")):
        bench_tokenizer(name)
    if args.harmony_vocab:
        bench_harmony(args.harmony_vocab)
    if args.schemas_model:
        bench_schemas(args.schemas_model, args.samples, args.temperature, args.max_tokens, args.seed,
                      args.json_object)


if __name__ == "__main__":
    main()
