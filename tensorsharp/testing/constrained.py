"""Constrained generation of many samples of one prompt in one batch, for tests and benchmarks."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from tensorsharp.engine.batch import Stepper
from tensorsharp.engine.constraint import Constraint
from tensorsharp.engine.kv_cache import KVCache
from tensorsharp.engine.sampler import Sampler, SamplingParams


@dataclass
class Sampled:
    tokens: list[int]     # without the end-of-generation token
    text: str
    done: bool            # the constraint completed (else max_tokens cut it off)


@dataclass
class Timings:
    forward_s: float = 0.0
    mask_s: float = 0.0    # fill_mask + accept
    sample_s: float = 0.0
    tokens: int = 0        # sampled tokens, all sequences
    steps: list[int] = field(default_factory=list)  # batch size of each decode step


def generate_batch(model, prompt: list[int], constraints: list[Constraint], max_tokens: int,
                   params: SamplingParams, timings: Timings | None = None) -> list[Sampled]:
    """One sample per constraint, all decoded together: the prompt is evaluated once into slot 0,
    copied to the other slots, and every step runs the still-active sequences as one batch.
    model: a tensorsharp.Model (its transformer and tokenizer); sequence i samples with
    seed params.seed + i."""
    n = len(constraints)
    timings = timings if timings is not None else Timings()
    tok = model.tokenizer
    cache = KVCache(model.transformer, len(prompt) + max_tokens, n_seq=n)
    stepper = Stepper(model.transformer, cache, n_batch=max(n, 64))
    t0 = time.perf_counter()
    logits = np.repeat(stepper.prefill(prompt)[None], n, axis=0)
    cache.length[0] = len(prompt)
    for s in range(1, n):
        cache.copy_prefix(0, s, len(prompt))
    timings.forward_s += time.perf_counter() - t0
    base = params.seed or 0
    samplers = [Sampler(replace(params, seed=base + s), history=prompt) for s in range(n)]
    out = [[] for _ in range(n)]
    done = [False] * n
    active = list(range(n))
    masks = np.zeros((n, (model.n_vocab + 31) // 32), np.uint32)
    for _ in range(max_tokens):
        fed = []
        for row, s in enumerate(active):
            t0 = time.perf_counter()
            constraints[s].fill_mask(masks[s])
            t1 = time.perf_counter()
            token = samplers[s].sample(logits[row], masks[s]).token
            t2 = time.perf_counter()
            constraints[s].accept(token)
            timings.mask_s += (t1 - t0) + (time.perf_counter() - t2)
            timings.sample_s += t2 - t1
            timings.tokens += 1
            samplers[s].accept(token)
            if tok.is_eog(token) or constraints[s].is_done():
                done[s] = constraints[s].is_done()
                if not tok.is_eog(token):
                    out[s].append(token)
                continue
            out[s].append(token)
            fed.append((s, token))
        if not fed:
            break
        active = [s for s, _ in fed]
        pos = [cache.reserve(s, 1) for s in active]
        t0 = time.perf_counter()
        logits = stepper.step([t for _, t in fed], pos, active, list(range(len(active))))
        timings.forward_s += time.perf_counter() - t0
        timings.steps.append(len(active))
    return [Sampled(out[s], tok.decode(out[s]), done[s]) for s in range(n)]


def _obj(props: dict, required=None, **extra) -> dict:
    return {"type": "object", "properties": props, "required": list(props) if required is None else required,
            "additionalProperties": False, **extra}


def _str(max_length: int, **extra) -> dict:
    return {"type": "string", "maxLength": max_length, **extra}


# (task, schema): twenty different shapes for the structured-output acceptance run. Strings carry
# maxLength and arrays maxItems so that every instance fits in a few hundred tokens.
SCHEMA_CASES = [
    ("Describe a fictional person.",
     _obj({"name": _str(30), "age": {"type": "integer", "minimum": 0, "maximum": 120}})),
    ("Pick a favourite colour.",
     _obj({"color": {"enum": ["red", "green", "blue", "yellow"]}})),
    ("List a few fruits.",
     _obj({"fruits": {"type": "array", "items": _str(15), "minItems": 1, "maxItems": 4}})),
    ("Give the address of a made-up office.",
     _obj({"street": _str(40), "city": _str(25), "zip": {"type": "string", "pattern": "^[0-9]{5}$"}})),
    ("Give an identifier, as a number or a short code.",
     _obj({"id": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 9999}, _str(10)]}})),
    ("Describe a task on a to-do list.",
     _obj({"title": _str(40), "done": {"type": "boolean"},
           "priority": {"type": "integer", "minimum": 1, "maximum": 5}})),
    ("Report today's weather.",
     _obj({"temperature": {"type": "number", "minimum": -50, "maximum": 50},
           "unit": {"enum": ["C", "F"]}, "summary": _str(40)})),
    ("Give some points on a small grid.",
     _obj({"points": {"type": "array", "minItems": 1, "maxItems": 3,
                      "items": _obj({"x": {"type": "integer", "minimum": 0, "maximum": 10},
                                     "y": {"type": "integer", "minimum": 0, "maximum": 10}})}})),
    ("Give a few lottery numbers.",
     {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 49}, "minItems": 1, "maxItems": 6}),
    ("Describe a book.",
     _obj({"title": _str(40), "author": _obj({"first": _str(20), "last": _str(20)}),
           "year": {"type": "integer", "minimum": 1500, "maximum": 2025}})),
    ("Describe a pet; the age is optional.",
     _obj({"species": _str(20), "age": {"type": "integer", "minimum": 0, "maximum": 40}}, required=["species"])),
    ("Log an event.",
     _obj({"kind": {"const": "event"}, "level": {"enum": ["debug", "info", "warning", "error"]},
           "message": _str(50)})),
    ("Write an optional note (it may be null).",
     _obj({"note": {"type": ["string", "null"], "maxLength": 40}})),
    ("Describe a shape.",
     _obj({"shape": {"anyOf": [
         _obj({"kind": {"const": "circle"}, "radius": {"type": "number", "minimum": 0, "maximum": 10}}),
         _obj({"kind": {"const": "square"}, "side": {"type": "number", "minimum": 0, "maximum": 10}})]}})),
    ("Answer: is the sky blue?",
     {"enum": ["yes", "no", "maybe"]}),
    ("Rate a film from 1 to 10.",
     {"type": "integer", "minimum": 1, "maximum": 10}),
    ("Tag a news article.",
     _obj({"tags": {"type": "array", "items": {"enum": ["politics", "sports", "science", "arts", "business"]},
                    "minItems": 1, "maxItems": 3}})),
    ("Plan a trip between two cities.",
     {"$defs": {"place": _obj({"city": _str(25), "country": _str(25)})},
      **_obj({"from": {"$ref": "#/$defs/place"}, "to": {"$ref": "#/$defs/place"},
              "days": {"type": "integer", "minimum": 1, "maximum": 30}})}),
    ("Give a 2x2 matrix of small numbers.",
     _obj({"matrix": {"type": "array", "minItems": 2, "maxItems": 2,
                      "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                "items": {"type": "number", "minimum": -10, "maximum": 10}}}})),
    ("Make a contact card.",
     _obj({"name": _str(30), "email": {"type": "string", "format": "email", "maxLength": 40},
           "phone": {"type": "string", "pattern": "^\\+?[0-9 ]{7,15}$"},
           "birthday": {"type": "string", "format": "date"}}, required=["name", "email"])),
]
