"""The replica without Ray: a request crosses processes as Wire (its constraint as a grammar), and the
replica streams its events in batches, takes cancels that arrive before their request, reports what
its slots hold, and counts the front ends that use it."""
import json
import pickle

import pytest

from tensorsharp import store
from tensorsharp.cluster.replica import FrontEnds, Replica, Wire
from tensorsharp.cluster.router import prefix_hashes
from tensorsharp.engine.constraint import json_schema_constraint
from tensorsharp.engine.request import Done, Failed, GenerationRequest, Started, Token
from tensorsharp.engine.sampler import SamplingParams
from tensorsharp.server.catalog import file_spec

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


@pytest.fixture(scope="module")
def replica():
    r = Replica(file_spec(store.resolve("smollm2-135m")), dict(n_ctx=512, n_threads=1, parallel=2, cache_slots=1))
    yield r
    r.close()


def prompt(replica, text):
    return replica.served.tokenize_prompt(replica.served.render([{"role": "user", "content": text}]))


def run(replica, wire):
    batches = [pickle.loads(pickle.dumps(b)) for b in replica.generate(pickle.loads(pickle.dumps(wire)))]
    return [e for b in batches for e in b], batches


def test_a_constrained_request_crosses_as_its_grammar(replica):
    tok = replica.served.tokenizer
    req = GenerationRequest(prompt(replica, "Give me a JSON object with a number n."), 40, SamplingParams(),
                            constraint=json_schema_constraint(tok, SCHEMA), group=object())
    wire = Wire.of("a", req, "front:1")
    assert wire.request.constraint is None and wire.request.group == "front:1" and wire.grammar
    events, batches = run(replica, wire)
    assert isinstance(events[0], Started) and isinstance(events[-1], Done) and events[-1].reason == "stop"
    assert len(batches) <= len(events)
    text = "".join(e.text for e in events if isinstance(e, Token))
    assert isinstance(json.loads(text)["n"], int)


def test_a_cancel_that_overtakes_its_request_still_ends_it(replica):
    replica.cancel("b")
    req = GenerationRequest(prompt(replica, "Write a long story."), 200, SamplingParams())
    events, _ = run(replica, Wire.of("b", req, None))
    assert isinstance(events[-1], Done) and events[-1].reason == "cancelled" and events[-1].completion_tokens < 200


def test_a_refused_request_is_one_failed_event(replica):
    req = GenerationRequest([1, 2, 3], 5, SamplingParams(top_k=-1))
    events, _ = run(replica, Wire.of("c", req, None))
    assert len(events) == 1 and isinstance(events[0], Failed) and isinstance(events[0].error, ValueError)


def test_report(replica):
    r = replica.report()
    assert r["parallel"] == 2 and len(r["slots"]) == 3 and r["n_ctx"] == 512 and r["stalled"] is None
    assert r["processed"] >= 1 and r["kv_bytes"] > 0   # the cancelled one never started


def test_front_ends_hold_a_replica_until_the_last_leaves_or_all_go_quiet():
    now = [0.0]
    fronts = FrontEnds(lease=30, clock=lambda: now[0])
    fronts.heard("a")
    fronts.heard("b")
    assert not fronts.leave("a") and fronts.live() == ["b"]
    now[0] = 20
    assert not fronts.orphaned()
    now[0] = 31   # b stopped without leaving: forgotten after a lease, and then the replica is alone
    assert fronts.live() == [] and fronts.orphaned()
    fronts.heard("c")
    assert not fronts.orphaned() and fronts.leave("c")


def test_the_last_front_end_to_leave_ends_it_and_no_one_joins_it_then(replica):
    assert replica.join("x") is not None and replica.join("y") is not None
    assert replica.report("x")["fronts"] == ["x", "y"]
    assert replica.leave("x") is False and not replica.report()["ending"]
    assert replica.leave("y") is True and replica.report()["ending"]
    assert replica.join("z") is None and replica.report("z")["fronts"] == []
    replica.ending = False   # the module's replica serves the other tests


def test_report_names_the_prefixes_its_slots_hold(replica):
    ids = prompt(replica, "Name three rivers.")
    run(replica, Wire.of("d", GenerationRequest(ids, 4, SamplingParams()), None))
    assert set(prefix_hashes(ids)) <= set(replica.report()["held"])


def test_a_front_end_that_leaves_ends_what_it_left_running(replica):
    # A front end stopped mid-stream: nobody reads its request any more, so it must not keep
    # its slot until max_tokens. Another front end's request runs on.
    assert replica.join("gone") is not None and replica.join("stays") is not None
    req = lambda: GenerationRequest(prompt(replica, "Write a long story."), 300, SamplingParams())  # noqa: E731
    left, kept = replica.generate(Wire.of("gone/1", req(), None)), replica.generate(Wire.of("stays/1", req(), None))
    assert isinstance(next(left)[0], Started) and isinstance(next(kept)[0], Started)
    assert replica.leave("gone") is False
    (end,) = [b[-1] for b in left if isinstance(b[-1], Done)]
    assert end.reason == "cancelled" and end.completion_tokens < 300
    (end,) = [b[-1] for b in kept if isinstance(b[-1], Done)]
    assert end.reason == "length"
    replica.leave("stays")
    replica.ending = False   # the module's replica serves the other tests
