"""Stop sequences matched on generated text, across token boundaries."""
from __future__ import annotations


class StopMatcher:
    """Feed text pieces; get back what is safe to emit and whether a stop string was hit.

    Text that could still grow into a stop string is held back until it cannot."""

    def __init__(self, stops):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        buf = self.pending + text
        hits = [(buf.find(s), s) for s in self.stops if s in buf]
        if hits:
            at = min(i for i, _ in hits)
            self.stopped = True
            self.pending = ""
            return buf[:at]
        hold = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buf)), 0, -1):
                if buf.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        self.pending = buf[len(buf) - hold:] if hold else ""
        return buf[: len(buf) - hold]

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return "" if self.stopped else out
