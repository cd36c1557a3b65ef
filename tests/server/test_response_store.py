"""Stored responses: bounded by count and bytes, least recently used forgotten first; a chain of
turns outlives its earlier entries."""
from tensorsharp.server.protocol.common import Image
from tensorsharp.server.response_store import ResponseStore, Stored


def _stored(rid: str, parent=None, text: str = "hi", images=()) -> Stored:
    return Stored({"id": rid}, [], [{"role": "user", "content": text}], list(images), parent)


def test_least_recently_used_is_forgotten():
    s = ResponseStore(limit=2)
    a, b = _stored("a"), _stored("b")
    s.put(a)
    s.put(b)
    assert s.get("a") is a      # a is now more recent than b
    s.put(_stored("c"))
    assert s.get("b") is None and s.get("a") is a and s.get("c") is not None
    assert s.delete("a") and not s.delete("a")


def test_bytes_bound_keeps_the_newest():
    s = ResponseStore(max_bytes=1000)
    s.put(_stored("a", images=[Image.of(b"x" * 600)]))
    s.put(_stored("b", images=[Image.of(b"y" * 600)]))
    assert s.get("a") is None and s.get("b") is not None
    s.put(_stored("c", images=[Image.of(b"z" * 5000)]))   # larger than the bound: kept alone
    assert s.get("b") is None and s.get("c") is not None


def test_chain_outlives_its_earlier_entries():
    s = ResponseStore()
    first = _stored("r1", text="one")
    s.put(first)
    second = _stored("r2", first, text="two")
    s.put(second)
    s.delete("r1")
    turns, _ = s.get("r2").history()
    assert [t["content"] for t in turns] == ["one", "two"] and second.conversation == "r1"
