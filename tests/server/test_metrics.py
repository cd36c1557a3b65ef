"""/metrics: Prometheus text that prometheus_client's own parser reads, with counters that move."""
from prometheus_client.parser import text_string_to_metric_families

MODEL = "smollm2-135m"


def scrape(client) -> dict:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(r.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_as_requests_are_served(client):
    served = client.application.extensions["tensorsharp"].served.name
    before = scrape(client)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count to three."}], "max_tokens": 5}
    done = client.post("/v1/chat/completions", json=body).get_json()["usage"]
    again = client.post("/v1/chat/completions", json=body).get_json()["usage"]   # its prefix is cached
    client.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "options": {"num_predict": 3}}).data
    client.post("/v1/chat/completions", json={"model": "nope", "messages": body["messages"]})
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    route = {"route": "/v1/chat/completions", "method": "POST"}
    assert moved("tensorsharp_requests_total", status="200", **route) == 2
    assert moved("tensorsharp_requests_total", status="404", **route) == 1
    assert moved("tensorsharp_requests_total", route="/api/generate", method="POST", status="200") == 1
    assert moved("tensorsharp_requests_total", route="/metrics", method="GET", status="200") == 1
    assert moved("tensorsharp_generated_tokens_total", model=served) == done["completion_tokens"] + \
        again["completion_tokens"] + 3
    assert moved("tensorsharp_prompt_tokens_total", model=served) > 2 * done["prompt_tokens"]
    assert moved("tensorsharp_prompt_tokens_reused_total", model=served) >= \
        again["prompt_tokens_details"]["cached_tokens"] > 0
    assert moved("tensorsharp_time_to_first_token_seconds_count", model=served) == 3
    assert moved("tensorsharp_time_per_output_token_seconds_count", model=served) == 3
    assert moved("tensorsharp_time_to_first_token_seconds_sum", model=served) > 0


def test_engine_gauges(client):
    served = client.application.extensions["tensorsharp"].served
    samples = scrape(client)
    assert value(samples, "tensorsharp_queue_depth", model=served.name) == 0
    assert value(samples, "tensorsharp_active_sequences", model=served.name) == 0
    slots = {state: value(samples, "tensorsharp_kv_slots", model=served.name, state=state)
             for state in ("busy", "cached", "free")}
    assert sum(slots.values()) == len(served.scheduler.slots) and slots["busy"] == 0
    assert value(samples, "tensorsharp_kv_cache_tokens", model=served.name) == served.scheduler.cache.length.sum()
    assert value(samples, "tensorsharp_model_load_seconds", model=served.name) > 0


def test_every_app_counts_alone(client):
    from tensorsharp.server.app import create_app
    other = create_app(client.application.extensions["tensorsharp"].served)
    assert value(scrape(other.test_client()), "tensorsharp_requests_total", route="/v1/chat/completions",
                 method="POST", status="200") == 0
