"""keep_alive values as Ollama reads them."""
import pytest

from tensorsharp.server.protocol.duration import FOREVER, seconds


@pytest.mark.parametrize("value, expected", [
    ("5m", 300), ("1h30m", 5400), ("1.5s", 1.5), ("300ms", 0.3), ("0", 0), ("0s", 0), (0, 0), (120, 120),
    ("300", 300), (-1, FOREVER), ("-1", FOREVER), ("-1s", FOREVER), ("-5m", FOREVER), (2.5, 2.5),
])
def test_durations(value, expected):
    assert seconds(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["", "5x", "m5", "5 m", "1h-30m", True, None, [], float("nan"), "--1s"])
def test_not_durations(value):
    with pytest.raises(ValueError):
        seconds(value)
