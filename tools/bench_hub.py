"""CPU time the server's hub thread spends per streamed token, with a stand-in engine.

    python tools/bench_hub.py [--model smollm2-135m] [--tokens 400] [--rounds 4] [--every-ms 2]

The hub (routes, reply parsing, chunk encoding, the WSGI server's writes) runs beside the forward
pass on the same cores, so its CPU per token is what a streaming client costs the engine. Here the
app runs in this process on the real model's tokenizer and chat template, but its scheduler is
replaced by an OS thread that emits a token every --every-ms, so the figure does not depend on
the model's speed or on other load (a client in another process reads the stream). Prints the
median hub thread CPU per token over --rounds streams of each dialect.

--every-ms 0 queues a request's events as it is submitted: the hub writes the whole stream without
waiting, so the figure is the frame path alone (route, WSGI server, send) without the wake-up a
real engine's every token costs. The per-request part (routing, prompt, headers) is in it too:
compare two --tokens to take it out.
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time

import gevent
from gevent.pywsgi import WSGIServer

from tensorsharp.engine.request import Done, Handle, Started, Token
from tensorsharp.engine.thread import original
from tensorsharp.server.app import create_app
from tensorsharp.server.run import _Handler, listen

CLIENT = """
import json, socket, sys
port, path = int(sys.argv[1]), sys.argv[2]
for line in sys.stdin:
    payload = line.strip().encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nContent-Type: "
                     b"application/json\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n" % len(payload) + payload)
        head = b""
        while True:
            data = sock.recv(1 << 16)
            if not data:
                break
            head = head or data[:12]
    print(head.decode(errors="replace"), flush=True)
"""


class StandInScheduler:
    """Answers every request with max_tokens tokens " word", one every `every` seconds (0: all
    queued as it is submitted)."""

    def __init__(self, real, every: float):
        self._real, self._every = real, every

    def submit(self, request, sink):
        def run():
            sink(Started(len(request.prompt), 0))
            for i in range(request.max_tokens):
                if self._every:
                    time.sleep(self._every)
                sink(Token(100 + i, " word"))
            sink(Done("length", len(request.prompt), 0, request.max_tokens, 0, 0, 0, 0))
        if self._every:
            original("_thread", "start_new_thread")(run, ())
        else:
            run()
        return Handle(request, sink, lambda: None)

    def __getattr__(self, name):   # n_ctx, status() and the rest from the real one
        return getattr(self._real, name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--every-ms", type=float, default=2.0)
    args = ap.parse_args(argv)
    listener = listen("127.0.0.1", 0)
    port = listener.getsockname()[1]
    app = create_app(args.model, n_ctx=512, n_threads=1, parallel=1, speculative=False)
    served = app.extensions["tensorsharp"].served
    served.scheduler = StandInScheduler(served.scheduler, args.every_ms / 1000)
    server = WSGIServer(listener, app, handler_class=_Handler, log=None)
    server.connections, server.responses, server.max_connections, server.io_timeout = 0, 0, 16, 30
    server.start()
    messages = [{"role": "user", "content": "Write a story."}]
    dialects = {
        "openai": ("/v1/chat/completions", {"model": served.name, "messages": messages, "stream": True,
                                            "max_tokens": args.tokens}),
        "ollama": ("/api/chat", {"model": served.name, "messages": messages, "stream": True,
                                 "options": {"num_predict": args.tokens}}),
        "responses": ("/v1/responses", {"model": served.name, "input": "Write a story.", "stream": True,
                                        "max_output_tokens": args.tokens}),
    }
    cpu = {}
    for name, (path, body) in dialects.items():
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), path], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, cwd="/")
        cpu[name] = []
        for r in range(args.rounds + 1):   # the first round warms up
            t0 = time.thread_time()
            client.stdin.write(json.dumps(body) + "\n")
            client.stdin.flush()
            status = gevent.get_hub().threadpool.apply(client.stdout.readline)   # the hub stays free
            if not status.startswith("HTTP/1.1 200"):
                raise RuntimeError(f"{name}: {status}")
            if r:
                cpu[name].append((time.thread_time() - t0) / args.tokens * 1e6)
        client.stdin.close()
        client.wait()
    server.stop()
    app.extensions["tensorsharp"].close()
    pace = f"one every {args.every_ms:g} ms" if args.every_ms else "all queued at once"
    print(f"hub thread CPU per streamed token ({args.tokens} tokens, {pace}, "
          f"median of {args.rounds}):")
    for name, values in cpu.items():
        print(f"  {name:<9} {statistics.median(values):6.1f} us   (rounds: {', '.join(f'{v:.0f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
