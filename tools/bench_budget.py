"""Serving throughput on a step-cost clock: what speculation's guess budget does to 1 and N
concurrent streams, without the machine's load in the figures.

    python tools/bench_budget.py [--model smollm2-135m] [--workload prose|code] [--clients 1,8]
                                 [--max-tokens 64] [--rounds 2] [--curve 1:1,4:1.25,8:1.94]

The real scheduler serves bench_serve's requests (greedy, distinct prompts, --parallel 8), but
time is counted in steps: each forward step costs the curve at its row count (linear between the
points given and past the last two), and the guess budget is given the same curve. So rows and
accepted guesses are real and deterministic, and the rate (tokens per step of one row) is what a
machine whose steps cost that curve would serve, on a loaded machine as on a quiet one. Wall-clock
figures are bench_serve's; this isolates the policy. The default curves are the 2-thread decode
step ratios measured on a quiet machine (issue 14): B=4 ~1.25x one row, B=8 1.94x (SmolLM2),
1.48x (Gemma 3), 1.52x (Qwen2.5).
"""
from __future__ import annotations

import argparse
import sys
import threading

from bench_serve import prompt   # the same requests as the wall-clock benchmark

from tensorsharp.chat.template import ChatTemplate
from tensorsharp.engine import scheduler as sched
from tensorsharp.engine.guess_budget import StepCosts
from tensorsharp.engine.request import Done, GenerationRequest
from tensorsharp.llm import Model

CURVES = {"smollm2-135m": "1:1,4:1.25,8:1.94", "gemma3-270m": "1:1,4:1.25,8:1.48",
          "qwen2.5-coder-0.5b": "1:1,4:1.25,8:1.52"}


def step_cost(points: list[tuple[int, float]]):
    """The cost of a step of n rows: linear between the points, and past the last two."""
    def cost(n: int) -> float:
        (a, ca), (b, cb) = next(((p, q) for p, q in zip(points, points[1:]) if n <= q[0]), points[-2:])
        return ca + (cb - ca) * (n - a) / (b - a)
    return cost


def serve(m: Model, speculative: bool, cost, costs: StepCosts, clients: list[int], args) -> dict:
    """Per client count: (tokens per unit of step cost, guessed tokens verified, of which held)."""
    s = sched.build(m.transformer, m.tokenizer, 1024, parallel=8, n_threads=1, speculative=speculative,
                    max_queue=64, costs=costs)
    clock = [0.0]
    step = s.stepper.step

    def counted(tokens, *a, **kw):
        clock[0] += cost(len(tokens))
        return step(tokens, *a, **kw)
    s.stepper.step = counted
    template = ChatTemplate.for_model(m.gguf.metadata, m.tokenizer)
    out = {}
    with s:
        for k in clients:
            clock[0], drafted, accepted, tokens = 0.0, s.drafted, s.accepted, 0
            for rnd in range(args.rounds):
                done = [threading.Event() for _ in range(k)]
                for i in range(k):
                    text = prompt(args.workload, 100 * rnd + k + i)
                    ids = m.tokenize_prompt(template.render([{"role": "user", "content": text}],
                                                            add_generation_prompt=True))
                    s.submit(GenerationRequest(ids, args.max_tokens, stop_at_eog=False),
                             lambda ev, e=done[i]: isinstance(ev, Done) and e.set())
                for e in done:
                    e.wait()
                tokens += k * args.max_tokens
            out[k] = (tokens / clock[0], s.drafted - drafted, s.accepted - accepted)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--workload", choices=["prose", "code"], default="prose")
    p.add_argument("--clients", default="1,8")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--curve", help="rows:cost,... relative to one row (default: the model's from issue 14)")
    args = p.parse_args(argv)
    points = [(int(r), float(c)) for r, c in (pt.split(":") for pt in (args.curve or CURVES[args.model]).split(","))]
    cost = step_cost(points)
    rows = tuple(range(1, sched.FEW_ROWS + 1))
    costs = StepCosts(rows, tuple(cost(n) for n in rows))
    clients = [int(c) for c in args.clients.split(",")]
    m = Model(args.model, n_ctx=1024, n_threads=1)
    on = serve(m, True, cost, costs, clients, args)
    off = serve(m, False, cost, costs, clients, args)
    print(f"\n{args.model}, workload {args.workload}, {args.max_tokens} tokens per reply, step costs {points}\n")
    print("| clients | spec on tok/step | x one client | spec off tok/step | x one client | on / off | guessed, held |")
    print("|---|---|---|---|---|---|---|")
    for k in clients:
        (a, d, h), (b, _, _) = on[k], off[k]
        print(f"| {k} | {a:.3f} | {a / on[clients[0]][0]:.2f}x | {b:.3f} | {b / off[clients[0]][0]:.2f}x | "
              f"{a / b:.3f} | {d}, {h} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
