"""Decode speed with and without speculative decoding (prompt lookup), through the scheduler.

    python tools/bench_spec.py [--model qwen2.5-coder-0.5b] [--threads 2] [--rounds 3] [--clock wall|cpu]
                               [--show]

Workloads, one request at a time: code editing (the prompt holds a source file and asks for it
back with a small change, where guesses copied from the prompt mostly hold), prose greedy (an
explanation; a small model's greedy prose repeats phrases, so some guesses hold) and the same
prose sampled at temperature 0.8 with a seed (outputs are the same with and without guesses
for a given seed too), where guesses hold least. Rounds alternate the two schedulers so drift on a shared machine
hits both alike. The rate is decode only: (tokens - 1) / (last token time - first token time), the
prompt left out. On a machine shared with other work, `--threads 1 --clock cpu` counts this
process's CPU time instead of wall time (with more threads a barrier's spinning would count).
Prints medians, the ratio of speculative to plain, how many guessed tokens held,
and whether the outputs were the same (they must be).
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

from tensorsharp.chat.template import ChatTemplate
from tensorsharp.engine import scheduler as sched
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--show", action="store_true", help="print each workload's output")
    args = ap.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    m = Model(args.model, n_ctx=2048, n_threads=args.threads)
    template = ChatTemplate.for_model(m.gguf.metadata, m.tokenizer)
    prompts = {k: m.tokenize_prompt(template.render([{"role": "user", "content": v}]))
               for k, (v, _, _) in WORKLOADS.items()}
    scheds = {spec: sched.build(m.transformer, m.tokenizer, 2048, parallel=1, cache_slots=0, n_threads=args.threads,
                                speculative=spec).start() for spec in (False, True)}
    rates = {(w, spec): [] for w in WORKLOADS for spec in scheds}
    outputs, lengths, held = {}, {}, {w: [0, 0] for w in WORKLOADS}
    try:
        for r in range(args.rounds):
            for w, ids in prompts.items():
                for spec, s in scheds.items():
                    before = s.accepted, s.drafted
                    out, rate = run(s, ids, *WORKLOADS[w][1:], clock)
                    held[w][0] += s.accepted - before[0]
                    held[w][1] += s.drafted - before[1]
                    rates[w, spec].append(rate)
                    outputs.setdefault((w, spec), out)
                    lengths[w] = len(out)
                    print(f"round {r + 1} {w:9s} {'spec' if spec else 'plain':5s} {rate:6.1f} tok/s "
                          f"({len(out)} tokens)", flush=True)
        if args.show:
            for w in WORKLOADS:
                print(f"--- {w}\n{m.detokenize(outputs[w, True])}")
        print(f"\n{args.model}, {args.threads} threads, {args.clock} clock, medians of {args.rounds} rounds")
        print("| workload | tokens | plain tok/s | speculative tok/s | ratio | guesses held | same output |")
        print("|---|---|---|---|---|---|---|")
        for w in WORKLOADS:
            plain, fast = statistics.median(rates[w, False]), statistics.median(rates[w, True])
            same = outputs[w, False] == outputs[w, True]
            print(f"| {w} | {lengths[w]} | {plain:.1f} | {fast:.1f} | {fast / plain:.2f}x | "
                  f"{held[w][0]} of {held[w][1]} | {same} |")
    finally:
        for s in scheds.values():
            s.close()


if __name__ == "__main__":
    main()
