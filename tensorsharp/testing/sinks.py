"""An engine sink for tests: records a request's events and says how it ended."""
from __future__ import annotations

import threading

from tensorsharp.engine.request import Done, Failed, Token


class Collector:
    """Records every event; on_token(collector) runs after each token (to cancel mid-stream)."""

    def __init__(self, on_token=None):
        self.events, self.finished, self.on_token = [], threading.Event(), on_token

    def __call__(self, event):
        self.events.append(event)
        if isinstance(event, Token) and self.on_token:
            self.on_token(self)
        if isinstance(event, (Done, Failed)):
            self.finished.set()

    def tokens(self):
        return [e for e in self.events if isinstance(e, Token)]

    def outcome(self):
        """Everything a client sees: each token event, then the end's reason and count."""
        assert self.finished.wait(120)
        (d,) = [e for e in self.events if isinstance(e, (Done, Failed))]
        assert isinstance(d, Done), d.error
        return [(t.id, t.text, t.logprob, t.top) for t in self.tokens()], d.reason, d.completion_tokens
