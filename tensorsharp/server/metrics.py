"""What /metrics exports (Prometheus text format): requests, tokens, latencies and the engine's load.

Each app has its own CollectorRegistry, so apps in one process (tests make many) count apart.
Counters and histograms move as requests are served; the engine's gauges (queue, sequences, KV
slots) are read from the scheduler when scraped.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from tensorsharp.engine.request import Done

# Seconds; from a small model on one core (tens of ms) to a long prompt on a large one.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKEN_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)


class _Engine:
    """The scheduler's state as gauges, read at scrape time from each served model."""

    def __init__(self, served_models):
        self._served = served_models   # () -> iterable of ServedModel

    def collect(self):
        queue = GaugeMetricFamily("tensorsharp_queue_depth", "Requests waiting for a sequence", labels=["model"])
        active = GaugeMetricFamily("tensorsharp_active_sequences", "Requests being served", labels=["model"])
        slots = GaugeMetricFamily("tensorsharp_kv_slots", "KV cache slots", labels=["model", "state"])
        cached = GaugeMetricFamily("tensorsharp_kv_cache_tokens", "Positions held in the KV cache", labels=["model"])
        load = GaugeMetricFamily("tensorsharp_model_load_seconds", "Time the model took to load", labels=["model"])
        for served in self._served():
            sched, name = served.scheduler, served.name
            status = sched.status()
            queue.add_metric([name], status["pending"])
            active.add_metric([name], status["active"])
            load.add_metric([name], served.load_ns / 1e9)
            if not served.generates:
                continue   # an encoder keeps no KV cache between requests
            busy = sum(1 for s in sched.slots if s.busy)
            holding = sum(1 for s in sched.slots if s.tokens and not s.busy)   # idle, keeping a prefix
            slots.add_metric([name, "busy"], busy)
            slots.add_metric([name, "cached"], holding)
            slots.add_metric([name, "free"], len(sched.slots) - busy - holding)
            cached.add_metric([name], float(sched.cache.length.sum()))
        yield from (queue, active, slots, cached, load)


class Metrics:
    def __init__(self, served_models):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tensorsharp_requests", "HTTP requests answered, by route and status",
                                ["route", "method", "status"], registry=r)
        self.prompt_tokens = Counter("tensorsharp_prompt_tokens", "Prompt tokens of finished requests",
                                     ["model"], registry=r)
        self.cached_tokens = Counter("tensorsharp_prompt_tokens_reused",
                                     "Prompt tokens taken from the KV cache instead of evaluated", ["model"], registry=r)
        self.generated_tokens = Counter("tensorsharp_generated_tokens", "Tokens generated", ["model"], registry=r)
        self.ttft = Histogram("tensorsharp_time_to_first_token_seconds", "Submission to the first generated token",
                              ["model"], buckets=TTFT_BUCKETS, registry=r)
        self.per_token = Histogram("tensorsharp_time_per_output_token_seconds",
                                   "Mean time between generated tokens of a request", ["model"],
                                   buckets=TOKEN_BUCKETS, registry=r)
        r.register(_Engine(served_models))

    def request(self, route: str, method: str, status: int) -> None:
        self.requests.labels(route, method, str(status)).inc()

    def finished(self, model: str, done: Done) -> None:
        """One choice of a request ended (however it ended)."""
        self.prompt_tokens.labels(model).inc(done.prompt_tokens)
        self.cached_tokens.labels(model).inc(done.cached_tokens)
        self.generated_tokens.labels(model).inc(done.completion_tokens)
        if done.completion_tokens:
            self.ttft.labels(model).observe((done.queue_ns + done.prompt_ns) / 1e9)
        if done.completion_tokens > 1:
            self.per_token.labels(model).observe(done.eval_ns / (done.completion_tokens - 1) / 1e9)

    def text(self) -> bytes:
        return generate_latest(self.registry)
