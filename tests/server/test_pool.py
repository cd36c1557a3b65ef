"""The model pool over fake models: least recently used idle eviction within a count and a byte
budget, models in use never evicted, one shared load per model, keep_alive expiry and unload."""
import time
from pathlib import Path

import gevent
import pytest

from tensorsharp.errors import GGUFError
from tensorsharp.server.catalog import Spec
from tensorsharp.server.errors import ApiError
from tensorsharp.server.pool import ModelPool
from tensorsharp.server.protocol.duration import FOREVER

MB = 1 << 20


class FakeModel:
    def __init__(self, spec: Spec, size: int):
        self.spec, self.memory_bytes, self.closed = spec, size, False

    @property
    def name(self):
        return self.spec.name

    def close(self):
        self.closed = True


def spec(name: str) -> Spec:
    return Spec(f"{name}:latest", Path(f"/models/{name}.gguf"), frozenset({name}))


class Loader:
    """Loads FakeModels of the given sizes, slowly enough for requests to meet during a load."""

    def __init__(self, sizes: dict, seconds: float = 0.0):
        self.sizes, self.seconds, self.loads = sizes, seconds, []

    def __call__(self, s: Spec):
        time.sleep(self.seconds)   # a worker thread: a real load blocks it the same way
        if s.name.startswith("broken"):
            raise GGUFError(f"{s.path.name}: unsupported architecture 'x'")
        self.loads.append(s.name)
        return FakeModel(s, self.sizes[s.name.split(":")[0]])

    def estimate(self, s: Spec) -> int:
        return self.sizes[s.name.split(":")[0]]


def pool(sizes, max_loaded=3, max_memory=0, keep_alive=FOREVER, seconds=0.0, resident=None):
    loader = Loader(sizes, seconds)
    return ModelPool(loader, loader.estimate, max_loaded, max_memory, keep_alive, resident), loader


def names(p):
    return sorted(e.name.split(":")[0] for e in p.loaded())


def use(p, name, keep_alive=None):
    p.release(p.acquire(spec(name)), keep_alive)


def test_least_recently_used_idle_model_makes_room():
    p, loader = pool({"a": MB, "b": MB, "c": MB}, max_loaded=2)
    use(p, "a")
    use(p, "b")
    use(p, "a")          # b is now the least recently used
    use(p, "c")
    assert names(p) == ["a", "c"] and loader.loads == ["a:latest", "b:latest", "c:latest"]


def test_memory_budget_counts_bytes_and_refuses_what_can_never_fit():
    p, _ = pool({"a": 60 * MB, "b": 50 * MB, "c": 30 * MB, "huge": 200 * MB}, max_loaded=5, max_memory=100 * MB)
    use(p, "a")
    use(p, "c")
    use(p, "b")          # 60 + 30 + 50 > 100: a (least recent) goes, 30 + 50 fits
    assert names(p) == ["b", "c"] and p.used_bytes() == 80 * MB
    with pytest.raises(ApiError) as e:
        p.acquire(spec("huge"))
    assert e.value.status == 507 and "budget" in e.value.message
    assert names(p) == ["b", "c"]   # nothing was evicted for a model that cannot fit anyway


def test_a_model_in_use_is_never_evicted():
    p, _ = pool({"a": MB, "b": MB}, max_loaded=1)
    held = p.acquire(spec("a"))
    with pytest.raises(ApiError) as e:
        p.acquire(spec("b"))
    assert e.value.status == 503 and not held.closed and names(p) == ["a"]
    p.release(held)
    use(p, "b")
    assert held.closed and names(p) == ["b"]


def test_requests_for_a_model_being_loaded_share_its_load():
    p, loader = pool({"a": MB}, seconds=0.2)
    got = [gevent.spawn(p.acquire, spec("a")) for _ in range(4)]
    gevent.joinall(got, raise_error=True)
    assert loader.loads == ["a:latest"] and len({id(g.value) for g in got}) == 1
    assert p.loaded()[0].in_use == 4


def test_keep_alive_zero_unloads_as_the_last_request_ends():
    p, _ = pool({"a": MB})
    first, second = p.acquire(spec("a")), p.acquire(spec("a"))
    p.release(first, 0)
    assert names(p) == ["a"]     # still in use by the second request
    p.release(second, 0)
    assert names(p) == [] and first.closed


def test_keep_alive_expires_and_a_new_request_restarts_the_countdown():
    p, _ = pool({"a": MB, "b": MB}, keep_alive=0.3)
    use(p, "a")
    use(p, "b", FOREVER)
    gevent.sleep(0.2)
    use(p, "a")                  # the countdown starts again from here
    gevent.sleep(0.2)
    assert names(p) == ["a", "b"]
    gevent.sleep(0.25)
    assert names(p) == ["b"]     # b was asked to stay forever
    (b,) = p.loaded()
    assert b.expiry().year > 2100


def test_unload_of_a_model_in_use_waits_for_its_request():
    p, _ = pool({"a": MB})
    held = p.acquire(spec("a"))
    assert p.unload("a:latest") and names(p) == ["a"] and not held.closed
    p.release(held)
    assert names(p) == [] and held.closed
    assert not p.unload("a:latest")


def test_a_failed_load_is_an_error_for_every_request_waiting_and_the_next_one_tries_again():
    p, _ = pool({"broken": MB}, seconds=0.1)
    waiting = [gevent.spawn(p.acquire, spec("broken")) for _ in range(3)]
    gevent.joinall(waiting)
    for g in waiting:
        assert isinstance(g.exception, GGUFError) and "unsupported architecture" in str(g.exception)
    assert p.loaded() == [] and p.used_bytes() == 0
    with pytest.raises(GGUFError):
        p.acquire(spec("broken"))


def test_models_named_at_start_stay_unless_a_request_says_otherwise():
    p, _ = pool({"a": MB, "b": MB}, keep_alive=0.1)
    p.pin(spec("a"))
    use(p, "b")
    use(p, "a")
    gevent.sleep(0.3)
    assert names(p) == ["a"] and p.loaded()[0].expiry().year > 2100
    use(p, "a", 0.1)             # a request's own keep_alive counts for a pinned model too
    gevent.sleep(0.3)
    assert names(p) == []


class Process:
    """A process's resident size as the pool reads it: its own base, what each fake model
    counts, and what no count sees (extra)."""

    def __init__(self, base: int):
        self.base, self.extra, self.pool = base, 0, None

    def __call__(self) -> int:
        models = sum(e.size for e in self.pool.loaded()) if self.pool is not None else 0
        return self.base + models + self.extra


def test_the_budget_counts_the_process_without_models():
    proc = Process(40 * MB)
    p, _ = pool({"a": 50 * MB, "b": 50 * MB, "huge": 70 * MB}, max_memory=100 * MB, resident=proc)
    proc.pool = p
    use(p, "a")
    assert p.base == 40 * MB and p.used_bytes() == 90 * MB
    use(p, "b")                      # 40 + 50 + 50 is over: a makes room
    assert names(p) == ["b"]
    with pytest.raises(ApiError) as e:
        use(p, "huge")               # fits the budget alone, not beside the server itself
    assert e.value.status == 507 and "40 MB" in e.value.message


def test_a_model_that_grows_during_a_request_is_counted_as_it_ends():
    p, _ = pool({"a": 10 * MB, "b": 10 * MB}, max_memory=100 * MB)
    served = p.acquire(spec("a"))
    served.memory_bytes = 30 * MB    # e.g. its first constrained request built the constraint vocabulary
    p.release(served)
    assert p.used_bytes() == 30 * MB and p.loaded()[0].size == 30 * MB


def test_measured_memory_over_the_budget_unloads_idle_models_but_the_newest():
    proc = Process(10 * MB)
    p, _ = pool({"a": 20 * MB, "b": 20 * MB, "c": 20 * MB}, max_memory=100 * MB, resident=proc)
    proc.pool = p
    for name in "abc":
        use(p, name)
    assert names(p) == ["a", "b", "c"]
    proc.extra = 35 * MB             # 10 + 60 + 35: over by what no count saw
    use(p, "b")
    assert names(p) == ["b", "c"]    # a, the least recently used, went; once under, no more
    proc.extra = 500 * MB
    held = p.acquire(spec("c"))
    use(p, "b")                      # b is the newest and c is in use: both stay
    assert names(p) == ["b", "c"]
    p.release(held)                  # c ends: b (now the older idle one) goes, c stays
    assert names(p) == ["c"]


def test_a_model_about_to_grow_makes_room_first():
    p, _ = pool({"a": 30 * MB, "b": 30 * MB, "c": 30 * MB}, max_memory=100 * MB)
    for name in "abc":
        use(p, name)
    served = p.acquire(spec("b"))
    p.grow(served, 20 * MB)          # 110 MB would not fit: a, the least recently used idle one, goes
    assert names(p) == ["b", "c"] and p.used_bytes() == 80 * MB
    p.grow(served, 60 * MB)          # c goes too; then only b, in use, is left: it still runs
    assert names(p) == ["b"] and p.used_bytes() == 110 * MB
    p.release(served)                # its own count again
    assert p.used_bytes() == 30 * MB
