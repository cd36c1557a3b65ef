"""The `tensorsharp` command: one argparse subcommand per verb, each a small function."""
from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata

from tensorsharp import config, store
from tensorsharp.errors import TensorSharpError


def _version() -> str:
    try:
        return metadata.version("tensorsharp")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _cmd_pull(args: argparse.Namespace) -> int:
    print(store.pull(args.name, progress=not args.quiet))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    cached = store.list_models()
    rows = [(c.name, store.format_size(c.size), str(c.path)) for c in cached]
    if args.all:
        have = {c.name for c in cached}
        rows += [(m.name, store.format_size(m.size), "(not pulled)") for m in store.known_models() if m.name not in have]
    if not rows:
        print(f"no models in {config.models_dir()}; get one with: tensorsharp pull {config.default_model()}")
        return 0
    rows.insert(0, ("NAME", "SIZE", "PATH"))
    w0, w1 = (max(len(r[i]) for r in rows) for i in range(2))
    for name, size, path in rows:
        print(f"{name:<{w0}}  {size:>{w1}}  {path}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    # Imported here so pull and list keep working even if the compiled kernels fail to load.
    from tensorsharp import kernels
    from tensorsharp.models import ARCHITECTURES, ENCODERS
    opts = config.load_options()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"tensorsharp {_version()} (python {sys.version.split()[0]})")
    print(f"kernel isa:     {kernels.isa()}")
    print(f"available isas: {', '.join(kernels.available_isas())}")
    print(f"cpus:           {os.cpu_count()} ({usable} usable)")
    print(f"architectures:  {', '.join(sorted(ARCHITECTURES))}")
    print(f"encoders:       {', '.join(sorted(ENCODERS))} (embeddings only)")
    print(f"quant types:    {', '.join(kernels.SUPPORTED_TYPES)}")
    print(f"models dir:     {config.models_dir()}")
    print(f"default model:  {opts.model}")
    print(f"context:        {opts.n_ctx or 'model default'}")
    print(f"kv cache:       {opts.kv_cache_type}")
    print(f"threads:        {opts.n_threads or 'one per usable cpu'}")
    return 0


def _is_known_model(name: str) -> bool:
    try:
        store.lookup(name)
    except TensorSharpError:
        return False
    return True


def _split_run_args(words: list[str]) -> tuple[str, str | None]:
    """`run [MODEL] [PROMPT]`: a lone word is the model if it names one, else the prompt."""
    if len(words) > 2:
        raise TensorSharpError("run takes at most a model and one quoted prompt")
    if len(words) == 2:
        return words[0], words[1]
    if len(words) == 1 and (_is_known_model(words[0]) or os.path.exists(words[0])):
        return words[0], None
    return config.default_model(), words[0] if words else None


def _cmd_run(args: argparse.Namespace) -> int:
    from tensorsharp.server.model import ServedModel   # the server's loader (and draft check), not its routes

    name, prompt = _split_run_args(args.words)
    # One slot, which keeps the conversation between turns: each turn evaluates only what is new.
    served = ServedModel.load(args.model or name, n_ctx=args.ctx, n_threads=args.threads, parallel=1, cache_slots=0,
                              max_queue=0, mmproj=config.NO_MMPROJ, speculative=args.speculative,
                              draft_model=args.draft_model, draft_max=args.draft_max,
                              kv_cache_type=config.kv_cache_type(args.kv_cache_type))
    try:
        if not served.generates:
            raise TensorSharpError(f"{served.path.name} is an embedding model: it cannot chat")
        return _chat(served, prompt, args)
    finally:
        served.close()


def _chat(served, prompt: str | None, args: argparse.Namespace) -> int:
    """One answer to prompt, or turns read from stdin until an empty line or its end."""
    messages = [{"role": "system", "content": args.system}] if args.system else []

    def answer(text: str) -> None:
        messages.append({"role": "user", "content": text})
        ids = served.tokenize_prompt(served.chat.render(served.template, messages))
        if len(ids) >= served.n_ctx:
            raise TensorSharpError(f"the conversation is {len(ids)} tokens but the context holds {served.n_ctx}; "
                                   "start again, or give a larger --ctx")
        # Like Ollama's CLI: unless limited, until the model stops or the context is full.
        limit = served.n_ctx - len(ids)
        max_tokens = limit if args.max_tokens is None else min(args.max_tokens, limit)
        reply = _stream(served.scheduler, ids, max_tokens, args)
        messages.append({"role": "assistant", "content": reply})

    if prompt is not None:
        answer(prompt)
        return 0
    print(f"chatting with {served.path.name}; an empty line or Ctrl-D ends", file=sys.stderr)
    while True:
        try:
            text = input(">>> ")
        except EOFError:
            print()
            return 0
        if not text.strip():
            return 0
        answer(text)


def _stream(scheduler, ids: list[int], max_tokens: int, args: argparse.Namespace) -> str:
    """Submits one answer to the engine thread and prints its text as it comes; returns the text."""
    import queue

    from tensorsharp.engine.request import Done, Failed, GenerationRequest, Token
    from tensorsharp.engine.sampler import SamplingParams

    sampling = SamplingParams(temperature=args.temperature, top_k=40, top_p=0.9, repeat_penalty=1.1, seed=args.seed)
    counts = _guess_counts(scheduler)
    events: queue.SimpleQueue = queue.SimpleQueue()
    handle = scheduler.submit(GenerationRequest(ids, max_tokens, sampling=sampling), events.put)
    reply = []
    try:
        while True:
            event = events.get()
            if isinstance(event, Token):
                reply.append(event.text)
                print(event.text, end="", flush=True)
            elif isinstance(event, Failed):
                raise event.error
            elif isinstance(event, Done):
                break
    finally:
        handle.cancel()   # a no-op after Done; ends the answer on Ctrl-C
    print()
    if args.verbose:
        guessed = [now - before for now, before in zip(_guess_counts(scheduler), counts)]
        print(_stats(event, guessed if scheduler.speculative else None), file=sys.stderr)
    return "".join(reply)


def _guess_counts(scheduler) -> tuple[int, ...]:
    """Tokens guessed so far and those that held, then the same of the draft model's guesses (the
    engine thread's counts, whole once a request's Done has been sent)."""
    d = scheduler.drafter
    return scheduler.drafted, scheduler.accepted, d.proposed if d else 0, d.accepted if d else 0


def _stats(done, guessed: list[int] | None) -> str:
    """What --verbose prints after an answer, in the words of Ollama's `run --verbose`; guessed:
    the answer's _guess_counts, None with speculation off."""
    evaluated = done.prompt_tokens - done.cached_tokens
    lines = [f"prompt eval count:    {evaluated} token(s) ({done.cached_tokens} more from the cache)",
             f"prompt eval rate:     {evaluated / max(done.prompt_ns, 1) * 1e9:.2f} tokens/s",
             f"eval count:           {done.completion_tokens} token(s)"]
    if done.completion_tokens > 1:   # the first token comes with the prompt's logits
        lines.append(f"eval rate:            {(done.completion_tokens - 1) / max(done.eval_ns, 1) * 1e9:.2f} tokens/s")
    if guessed is None:
        lines.append("guesses held:         (speculation off)")
    else:
        drafted, held, draft_drafted, draft_held = guessed
        lines.append(f"guesses held:         {held} of {drafted} guessed token(s), "
                     f"{draft_held} of {draft_drafted} by the draft model")
    return "\n".join(lines)


def _cmd_serve(args: argparse.Namespace) -> int:
    from tensorsharp.server.app import create_app
    from tensorsharp.server.run import listen, serve

    listener = listen(args.host, args.port)   # first: a taken port must not cost a model load
    app = create_app(args.model or None, n_ctx=args.ctx, n_threads=args.threads, parallel=args.parallel,
                     api_key=args.api_key, tool_format=args.tool_format, mmproj=args.mmproj,
                     allowed_origins=args.allowed_origins, allowed_hosts=args.allowed_hosts,
                     max_loaded=args.max_loaded, max_memory=args.max_memory, keep_alive=args.keep_alive,
                     speculative=args.speculative, ray=args.ray, replicas=args.replicas,
                     draft_model=args.draft_model, draft_max=args.draft_max,
                     stream_interval_ms=args.stream_interval, kv_cache_type=args.kv_cache_type)
    srv = config.server_options()
    serve(app, listener, drain_seconds=srv.drain_seconds, io_timeout=srv.io_timeout,
          max_connections=srv.max_connections or None)
    return 0


def _add_kv_cache_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kv-cache-type", choices=config.KV_CACHE_TYPES, default=config.load_options().kv_cache_type,
                   help="how the KV cache stores K and V: q8_0 takes 53%% of f16's memory for a small loss of "
                        "precision (llama.cpp's --cache-type-k/v; default: TENSORSHARP_KV_CACHE_TYPE, else "
                        "OLLAMA_KV_CACHE_TYPE, else %(default)s)")


def _add_speculation_options(p: argparse.ArgumentParser, targets: str) -> None:
    """run's and serve's options for speculative decoding, with the same defaults."""
    speculative = config.server_options().speculative
    p.add_argument("--speculative", action=argparse.BooleanOptionalAction, default=speculative,
                   help="verify guesses copied from the context (prompt lookup) in each decode step: "
                        "several tokens per step where the reply repeats its prompt, same output "
                        "(default: %(default)s)")
    p.add_argument("--draft-model", default=config.load_options().draft_model, metavar="NAME_OR_PATH",
                   help=f"a small model with the same vocabulary as {targets}, whose greedy guesses the decode "
                        "steps verify where prompt lookup has none; same output "
                        "(default: TENSORSHARP_DRAFT_MODEL, else none)")
    p.add_argument("--draft-max", type=int, default=config.load_options().draft_max, metavar="N",
                   help="tokens per draft model guess at most (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tensorsharp",
                                     description="Run GGUF language models on the CPU.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("pull", help="download and verify a model into the cache")
    p.add_argument("name", nargs="?", default=config.default_model(),
                   help="model name or alias (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_pull)

    p = sub.add_parser("list", help="list the models in the cache")
    p.add_argument("-a", "--all", action="store_true", help="also list known models not pulled yet")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("run", help="chat with a model: one answer to PROMPT, or interactively")
    p.add_argument("words", nargs="*", metavar="[MODEL] [PROMPT]",
                   help="model name or GGUF path (default: %s), then the prompt" % config.default_model())
    p.add_argument("--model", help="model name or GGUF path (instead of the positional one)")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="most tokens per answer (default: until the model stops or the context is full)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--ctx", type=int, default=config.load_options().n_ctx, help="context size in tokens")
    p.add_argument("--threads", type=int, default=config.load_options().n_threads)
    _add_kv_cache_option(p)
    _add_speculation_options(p, "the model")
    p.add_argument("--verbose", action="store_true",
                   help="after each answer, print its token counts, rates and guesses held to stderr")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("serve", help="serve a model over the Ollama, OpenAI and web UI APIs")
    srv = config.server_options()
    p.add_argument("--model", action="append", default=[],
                   help="model name or GGUF path, loaded at start (default: %s; pulled on first use); the "
                        "first is the default of requests that name none. Repeat it to serve files from "
                        "outside the store; the store's models are all served, loaded on demand"
                        % config.default_model())
    p.add_argument("--max-loaded", type=int, default=srv.max_loaded, metavar="N",
                   help="models loaded at once; the least recently used idle one makes room (default: %(default)s)")
    p.add_argument("--max-memory", type=int, default=srv.max_memory, metavar="BYTES",
                   help="bytes the loaded models may take, counted as file size + KV cache (default: "
                        "TENSORSHARP_MAX_MEMORY, else no limit)")
    p.add_argument("--keep-alive", default=srv.keep_alive, metavar="DURATION",
                   help="how long a model stays loaded after its last request, unless the request says "
                        "(Ollama's keep_alive: 5m, 1h, 300, 0, -1 = forever; default: %(default)s)")
    p.add_argument("--host", default=srv.host, help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=srv.port, help="(default: %(default)s)")
    p.add_argument("--ctx", type=int, default=config.load_options().n_ctx, help="context size in tokens")
    p.add_argument("--threads", type=int, default=config.load_options().n_threads)
    p.add_argument("--parallel", type=int, default=srv.parallel,
                   help="requests decoded together (default: %(default)s)")
    _add_kv_cache_option(p)
    _add_speculation_options(p, "the models named by --model")
    p.add_argument("--stream-interval", type=int, default=srv.stream_interval_ms, metavar="MS",
                   help="a stream's tokens that come within MS milliseconds of the last ones written go out "
                        "together, in one write: fewer wake-ups for fast models (0: each token at once; "
                        "default: %(default)s)")
    p.add_argument("--api-key", default=srv.api_key,
                   help="require 'Authorization: Bearer KEY' on every route but /health")
    p.add_argument("--allowed-origins", default=srv.allowed_origins, metavar="ORIGINS",
                   help="comma-separated origins (http://host:port) of web pages that may call the API "
                        "('*': any); others are refused")
    p.add_argument("--allowed-hosts", default=srv.allowed_hosts, metavar="NAMES",
                   help="comma-separated host names, besides localhost and loopback addresses, that "
                        "loopback clients may use ('*': any)")
    p.add_argument("--tool-format", default=srv.tool_format,
                   help="tool-call family instead of the detected one: hermes, llama3, mistral, granite, gemma, phi4, "
                        "harmony, generic")
    p.add_argument("--mmproj", default=config.load_options().mmproj, metavar="PATH",
                   help="projector GGUF that lets the model see images (default: an mmproj file beside "
                        f"the model; '{config.NO_MMPROJ}': none)")
    p.add_argument("--ray", default=srv.ray, metavar="ADDRESS",
                   help="serve each model from replicas on a Ray cluster: 'auto' (the one this host joined "
                        "with `ray start`), 'local' (a private one) or its address; needs tensorsharp[ray]")
    p.add_argument("--replicas", type=int, default=srv.replicas, metavar="N",
                   help="with --ray: replicas of each model, each with --threads threads (default: %(default)s)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("info", help="show version, kernel ISA, CPU, supported architectures and quant types")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:   # the parser's defaults read the environment, whose values may be malformed
        args = build_parser().parse_args(argv)
        return args.func(args)
    except TensorSharpError as e:
        print(f"tensorsharp: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tensorsharp: interrupted", file=sys.stderr)
        return 130
