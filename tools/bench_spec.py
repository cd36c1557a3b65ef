"""Decode speed with and without speculative decoding (prompt lookup), through the scheduler.

    python tools/bench_spec.py [--model qwen2.5-coder-0.5b] [--threads 2] [--rounds 3] [--clock wall|cpu]
                               [--show] [--draft-model NAME [--draft-max N] [--draft-cost]]

Workloads, one request at a time: code editing (the prompt holds a source file and asks for it
back with a small change, where guesses copied from the prompt mostly hold), prose greedy (an
explanation; a small model's greedy prose repeats phrases, so some guesses hold) and the same
prose sampled at temperature 0.8 with a seed (outputs are the same with and without guesses
for a given seed too), where guesses hold least. Rounds alternate the two schedulers so drift on a shared machine
hits both alike. The rate is decode only: (tokens - 1) / (last token time - first token time), the
prompt left out. On a machine shared with other work, `--threads 1 --clock cpu` counts this
process's CPU time instead of wall time (with more threads a barrier's spinning would count).
Prints medians, the ratio of speculative to plain, how many guessed tokens held,
and whether the outputs were the same (they must be). With --draft-model the speculative
scheduler also drafts with that model where prompt lookup has no guess (its own tokens held are
counted apart); --draft-cost then times one decode step of the draft and of the target alone
(medians over a context of the code-edit prompt), the figures that say what a draft costs.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

from tensorsharp.chat.template import ChatTemplate
from tensorsharp.engine import scheduler as sched
from tensorsharp.engine.draft_model import check_vocab
from tensorsharp.engine.request import Done, GenerationRequest, Token
from tensorsharp.engine.sampler import SamplingParams
from tensorsharp.llm import Model

CODE = '''import json
from dataclasses import dataclass, field


@dataclass
class Item:
    name: str
    price: float
    quantity: int = 1
    tags: list[str] = field(default_factory=list)

    def total(self) -> float:
        return self.price * self.quantity


class Cart:
    def __init__(self):
        self.items: list[Item] = []

    def add(self, item: Item) -> None:
        for existing in self.items:
            if existing.name == item.name:
                existing.quantity += item.quantity
                return
        self.items.append(item)

    def remove(self, name: str) -> None:
        self.items = [i for i in self.items if i.name != name]

    def total(self) -> float:
        return sum(i.total() for i in self.items)

    def tagged(self, tag: str) -> list[Item]:
        return [i for i in self.items if tag in i.tags]

    def to_json(self) -> str:
        return json.dumps([{"name": i.name, "price": i.price, "quantity": i.quantity, "tags": i.tags}
                           for i in self.items])

    @classmethod
    def from_json(cls, text: str) -> "Cart":
        cart = cls()
        for d in json.loads(text):
            cart.add(Item(d["name"], d["price"], d["quantity"], d["tags"]))
        return cart
'''
PROSE = "Explain in a few paragraphs why the sky is blue and why sunsets are red."
WORKLOADS = {   # name: (prompt, max_tokens, sampling)
    "code-edit": (f"Here is a Python file:\n\n```python\n{CODE}```\n\nRewrite the whole file with the method "
                  "`tagged` renamed to `with_tag`. Output only the complete code.", 400, SamplingParams()),
    "prose": (PROSE, 160, SamplingParams()),
    "prose-t0.8": (PROSE, 160, SamplingParams(temperature=0.8, seed=1)),
}


def run(s, ids: list[int], n: int, sampling: SamplingParams, clock) -> tuple[list[int], float]:
    """The ids and the decode rate of one request."""
    stamps, ids_out, done = [], [], threading.Event()

    def sink(e):
        if isinstance(e, Token):
            stamps.append(clock())
            ids_out.append(e.id)
        elif isinstance(e, Done):
            done.set()
    s.submit(GenerationRequest(ids, n, sampling=sampling, reuse_prefix=False), sink)
    done.wait()
    return ids_out, (len(stamps) - 1) / (stamps[-1] - stamps[0])


def step_ms(stepper, ids: list[int], clock, n: int = 30) -> float:
    """Median time of one single-row decode step after ids, in a free slot of stepper's cache."""
    cache, slot = stepper.cache, stepper.cache.n_seq - 1
    cache.truncate(slot, 0)
    cache.reserve(slot, len(ids))
    stepper.step(ids, list(range(len(ids))), [slot] * len(ids), [])
    times = []
    for i in range(n):
        pos = cache.reserve(slot, 1)
        t0 = clock()
        stepper.step([ids[i]], [pos], [slot], [0])
        times.append(clock() - t0)
    cache.truncate(slot, 0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--show", action="store_true", help="print each workload's output")
    ap.add_argument("--draft-model", help="a model of the same vocabulary drafting where prompt lookup has no guess")
    ap.add_argument("--draft-max", type=int, default=8)
    ap.add_argument("--draft-cost", action="store_true", help="also time one decode step of draft and target")
    args = ap.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    m = Model(args.model, n_ctx=2048, n_threads=args.threads)
    draft = None
    if args.draft_model:
        draft = m if args.draft_model == args.model else Model(args.draft_model, n_ctx=2048, n_threads=args.threads)
        check_vocab(m.gguf.metadata, draft.gguf.metadata, args.model, args.draft_model)
    template = ChatTemplate.for_model(m.gguf.metadata, m.tokenizer)
    prompts = {k: m.tokenize_prompt(template.render([{"role": "user", "content": v}]))
               for k, (v, _, _) in WORKLOADS.items()}
    scheds = {spec: sched.build(m.transformer, m.tokenizer, 2048, parallel=1, cache_slots=0, n_threads=args.threads,
                                speculative=spec, draft=draft.transformer if spec and draft else None,
                                draft_max=args.draft_max).start() for spec in (False, True)}
    rates = {(w, spec): [] for w in WORKLOADS for spec in scheds}
    outputs, lengths, held = {}, {}, {w: [0, 0] for w in WORKLOADS}
    drafted = {w: [0, 0] for w in WORKLOADS}   # the draft model's tokens held, of those it guessed
    drafter = scheds[True].drafter
    try:
        for r in range(args.rounds):
            for w, ids in prompts.items():
                for spec, s in scheds.items():
                    before = s.accepted, s.drafted
                    d_before = (drafter.accepted, drafter.proposed) if spec and drafter else (0, 0)
                    out, rate = run(s, ids, *WORKLOADS[w][1:], clock)
                    held[w][0] += s.accepted - before[0]
                    held[w][1] += s.drafted - before[1]
                    if spec and drafter:
                        drafted[w][0] += drafter.accepted - d_before[0]
                        drafted[w][1] += drafter.proposed - d_before[1]
                    rates[w, spec].append(rate)
                    outputs.setdefault((w, spec), out)
                    lengths[w] = len(out)
                    print(f"round {r + 1} {w:9s} {'spec' if spec else 'plain':5s} {rate:6.1f} tok/s "
                          f"({len(out)} tokens)", flush=True)
        if args.show:
            for w in WORKLOADS:
                print(f"--- {w}\n{m.detokenize(outputs[w, True])}")
        with_draft = f", draft {args.draft_model} (max {args.draft_max})" if drafter else ""
        print(f"\n{args.model}{with_draft}, {args.threads} threads, {args.clock} clock, "
              f"medians of {args.rounds} rounds")
        print("| workload | tokens | plain tok/s | speculative tok/s | ratio | guesses held | of which the draft's "
              "| same output |")
        print("|---|---|---|---|---|---|---|---|")
        for w in WORKLOADS:
            plain, fast = statistics.median(rates[w, False]), statistics.median(rates[w, True])
            same = outputs[w, False] == outputs[w, True]
            print(f"| {w} | {lengths[w]} | {plain:.1f} | {fast:.1f} | {fast / plain:.2f}x | "
                  f"{held[w][0]} of {held[w][1]} | {drafted[w][0]} of {drafted[w][1]} | {same} |")
        if args.draft_cost and drafter:
            target_ms, draft_ms = step_ms(scheds[False].stepper, prompts["code-edit"], clock), \
                step_ms(drafter.stepper, prompts["code-edit"], clock)
            print(f"\none decode step after {len(prompts['code-edit'])} tokens, median ms ({args.clock} clock): "
                  f"target {target_ms:.2f}, draft {draft_ms:.2f}, ratio {draft_ms / target_ms:.3f}")
    finally:
        for s in scheds.values():
            s.close()


if __name__ == "__main__":
    main()
