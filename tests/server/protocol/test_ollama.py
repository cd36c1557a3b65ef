"""Ollama protocol helpers: created_at stamps."""
from datetime import datetime, timedelta, timezone

from tensorsharp.server.protocol import ollama as ol


def test_timestamp_is_now_in_ollamas_format_across_seconds(monkeypatch):
    # 2024-02-29T23:59:59.999999Z, then the next microsecond: the date changes with the second.
    for ns, want in [(1709251199_999_999_000, "2024-02-29T23:59:59.999999Z"),
                     (1709251200_000_001_999, "2024-03-01T00:00:00.000001Z"),
                     (1709251200_500_000_000, "2024-03-01T00:00:00.500000Z")]:
        monkeypatch.setattr(ol.time, "time_ns", lambda ns=ns: ns)
        assert ol.timestamp() == want
    monkeypatch.undo()
    before = datetime.now(timezone.utc)
    stamp = ol.timestamp()
    after = datetime.now(timezone.utc)
    slack = timedelta(milliseconds=1)   # the clocks round microseconds differently
    assert before - slack <= datetime.fromisoformat(stamp.replace("Z", "+00:00")) <= after + slack
