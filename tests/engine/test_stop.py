"""Stop strings found across piece boundaries, with held-back partial matches."""
from tensorsharp.engine.stop import StopMatcher


def _run(stops, pieces):
    m = StopMatcher(stops)
    out = "".join(m.feed(p) for p in pieces)
    return out + m.flush(), m.stopped


def test_stop_inside_one_piece():
    assert _run(["END"], ["abcENDxyz"]) == ("abc", True)


def test_stop_split_across_pieces():
    assert _run(["<|end|>"], ["hello <|", "en", "d|> more"]) == ("hello ", True)


def test_partial_match_released_when_it_diverges():
    m = StopMatcher(["STOP"])
    assert m.feed("ab ST") == "ab "
    assert m.feed("ART") == "START"
    assert not m.stopped


def test_earliest_of_several_stops():
    assert _run(["bb", "a"], ["xxbba"]) == ("xx", True)


def test_no_stops_passes_through():
    assert _run([], ["a", "b"]) == ("ab", False)


def test_flush_returns_held_text():
    assert _run(["STOP"], ["end ST"]) == ("end ST", False)
