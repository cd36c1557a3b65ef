"""Session store: bounded LRU, and new turns found whether a client sends all or only new messages."""
from tensorsharp.server.sessions import Sessions, new_turns


def test_new_turns():
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    new = [{"role": "user", "content": "c"}]
    assert new_turns(history, new) == new
    assert new_turns(history, history + new) == new
    assert new_turns([], new) == new
    # A conversation that differs from the history is taken as it is.
    other = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "b"}] + new
    assert new_turns(history, other) == other


def test_least_recently_used_session_is_forgotten():
    s = Sessions(limit=2)
    a, b = s.create(), s.create()
    s.get(a.id)                 # a is now more recent than b
    c = s.create()
    assert s.get(b.id) is None and s.get(a.id) is a and s.get(c.id) is c
    assert s.delete(a.id) and not s.delete(a.id)
