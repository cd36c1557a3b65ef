"""The routing policy alone: session, then longest known prefix, then least load, within the
imbalance bound, and never a replica known dead."""
from tensorsharp.cluster.router import BLOCK, Router, prefix_hashes


def conversation(seed: int, blocks: int) -> list[int]:
    return [1000 * seed + k for k in range(blocks * BLOCK)]


def test_prefix_hashes_are_chained():
    a = conversation(1, 3)
    b = a[:BLOCK] + [7] * (2 * BLOCK)
    assert prefix_hashes(a) == prefix_hashes(a + [5] * (BLOCK - 1))   # a partial block adds nothing
    assert prefix_hashes(a)[0] == prefix_hashes(b)[0] and prefix_hashes(a)[1:] != prefix_hashes(b)[1:]
    c = [9] * BLOCK + a[BLOCK:]   # same later blocks after another first one
    assert not set(prefix_hashes(a)) & set(prefix_hashes(c))


def test_least_load_spreads_new_work():
    r = Router(2)
    assert [r.pick(conversation(s, 2)) for s in range(4)] == [0, 1, 0, 1]
    assert r.inflight == [2, 2] and r.decisions["load"] == 4


def test_follow_up_turn_goes_where_its_prefix_is():
    r = Router(3, max_imbalance=2)
    first = conversation(1, 2)
    i = r.pick(first)
    reply = [5, 6, 7] * BLOCK
    r.ended(i, first + reply)
    r.pick(conversation(2, 2))   # load elsewhere does not pull the follow-up away
    assert r.pick(first + reply + [8] * 40) == i
    assert r.decisions["prefix"] == 1


def test_a_shared_opening_alone_does_not_pull_new_conversations_together():
    r = Router(2, max_imbalance=4)
    system = conversation(0, 1)
    assert r.pick(system + conversation(1, 1)) == 0   # still in flight
    assert r.pick(system + conversation(2, 3)) == 1   # one block of four in common: load decides
    assert r.decisions == {"load": 2}


def test_session_beats_prefix_and_load():
    r = Router(2, max_imbalance=3)
    assert r.pick(conversation(1, 1), session="s") == 0
    r.ended(0)
    r.pick(conversation(2, 1))
    r.pick(conversation(3, 1))   # one request busy on each
    assert r.pick(conversation(4, 1), session="s") == 0 and r.decisions["session"] == 1


def test_imbalance_bound_overrides_affinity():
    r = Router(2, max_imbalance=1)
    first = conversation(1, 2)
    assert r.pick(first, session="s") == 0
    r.pick(conversation(2, 2))   # 1
    r.pick(conversation(3, 2))   # 0: now 2 against 1
    r.reported(0, 6)             # another front end keeps 0 busy too
    assert r.pick(first, session="s") == 1
    assert r.decisions["load"] == 4 and r.decisions["session"] == 0


def test_dead_replica_gets_nothing_until_it_is_back_and_then_is_forgotten():
    r = Router(2)
    first = conversation(1, 2)
    assert r.pick(first, session="s") == 0
    r.ended(0, first)
    r.down(0)
    assert [r.pick(first, session="s") for _ in range(5)] == [1] * 5
    r.down(1)
    assert r.pick(first) is None
    r.up(0, fresh=True)
    r.up(1, fresh=False)
    for _ in range(5):
        r.ended(1)
    # 0 restarted empty: the prefix is only known on 1 now, and the session follows it there.
    assert r.pick(first, session="t") == 1
    assert r.pick(conversation(2, 1), exclude=frozenset({1})) == 0


def test_a_prefix_another_front_end_left_is_known_from_the_replicas_report():
    r = Router(2, max_imbalance=2)
    theirs, dropped = conversation(1, 3), conversation(2, 3)
    r.reported(1, 0, prefix_hashes(dropped))
    r.reported(1, 0, prefix_hashes(theirs))   # the replica has since dropped the other one
    assert r.pick(dropped + [8] * 20) == 0 and r.decisions["load"] == 1
    r.ended(0)
    assert r.pick(theirs + [8] * 20) == 1 and r.decisions["prefix"] == 1
