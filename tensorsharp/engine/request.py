"""What goes into the scheduler (GenerationRequest) and what comes back out (events, Handle)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np

from tensorsharp.engine.sampler import SamplingParams
from tensorsharp.errors import TensorSharpError


class QueueFullError(TensorSharpError):
    """The scheduler's waiting queue is at capacity; the caller should retry later."""


class EngineUnavailableError(TensorSharpError):
    """No engine can serve the request now (every replica is down, or the one serving it died);
    the caller should retry later."""


@dataclass(eq=False)
class PromptImage:
    """An image's embeddings standing in for prompt positions [start, start + n_tokens)."""
    start: int
    embd: np.ndarray                  # (n_tokens, n_embd) f32: the projector's output, unscaled
    digest: str                       # content hash: cached positions are reused for the same image only
    bidirectional: bool = True        # its rows attend to each other (gemma3); False: causal

    @property
    def n_tokens(self) -> int:
        return len(self.embd)


POOLINGS = ("mean", "cls", "last")   # how an embedding request pools its prompt's final hidden states


def check_pooling(pooling: str | None) -> None:
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r} (mean, cls or last)")


@dataclass
class GenerationRequest:
    prompt: list[int]                 # token ids of the rendered prompt; -1 at image positions
    max_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: list[str] = ()              # stop strings (not included in output)
    session: str | None = None        # KV-cache affinity key (web UI session); None = any slot
    reuse_prefix: bool = True         # False (Ollama /api/generate): evaluate the whole prompt
    constraint: object | None = None  # engine/constraint.Constraint: fill_mask, accept, is_done
    stop_at_eog: bool = True
    images: list[PromptImage] = ()    # what fills the prompt's -1 positions, in order
    shown: frozenset[int] = frozenset()   # control tokens rendered into the text (parser markers)
    group: object | None = None       # the choices of one request (its n, its prompts) share a group: one
                                      # fair share of the engine and one place in the queue
    pooling: str | None = None        # an embedding request ("mean" | "cls" | "last"): the prompt's final
                                      # hidden states pooled into one Embedded event; nothing is sampled


@dataclass
class Queued:
    position: int                     # >= 1; 1 = next to start


@dataclass
class Started:
    prompt_tokens: int
    cached_tokens: int                # prompt positions reused from the KV cache


@dataclass
class Token:
    id: int
    text: str                         # newly settled text; "" while held back (UTF-8, stop strings)
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None   # (id, logprob) best first, when asked for


@dataclass
class Embedded:
    vector: np.ndarray                # (n_embd,) f32, pooled and not normalised


@dataclass
class Done:
    reason: str                       # "stop" | "length" | "cancelled"
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    prompt_ns: int                    # admission to the first token's logits
    eval_ns: int                      # first token's logits to the end
    total_ns: int                     # submit to the end
    queue_ns: int                     # submit to admission


@dataclass
class Failed:
    error: TensorSharpError


Event = Union[Queued, Started, Token, Done, Failed]
# Called on the engine thread with each event. A sink may also offer put(event) and flush(): the
# Scheduler then puts each event and flushes once per step, just before the step releases the GIL,
# so a consumer on another thread is woken once, when it can take the GIL at once.
Sink = Callable[[Event], None]


class Handle:
    """The caller's grip on a submitted request; cancel() may be called from any thread."""

    def __init__(self, request: GenerationRequest, sink: Sink, wake: Callable[[], None]):
        self.request = request
        self.sink = sink
        self.put = getattr(sink, "put", None)   # the sink's deferred form, looked up once (see Sink)
        self._wake = wake
        # A plain flag, not threading.Event: under gevent's monkey patching that would be a
        # greenlet primitive, and the engine thread reading it is a real OS thread.
        self.cancelled = False

    def cancel(self) -> None:
        """Ends the request before its next token (or takes it out of the queue)."""
        if not self.cancelled:
            self.cancelled = True
            self._wake()
