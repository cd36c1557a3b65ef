"""The engine thread: a bounded FIFO of requests, KV slots that keep prefixes, continuous batching.

One real OS thread owns the Stepper (model + KV cache). Up to `parallel` requests are active at
once: every step runs one batch holding the next token of each decoding request plus a chunk of
a newly admitted request's prompt, so prefill and decode share forward passes. The cache has more
slots than `parallel`; idle slots keep the tokens they hold so a later request with the same
prefix (a session's next turn) evaluates only what is new.

With speculation on, a decoding request's rows in a step are its last token followed by a guess
at the next few (engine/draft.py, or with a draft model engine/draft_model.py where prompt lookup
has none), as many as are expected to pay for their rows in the step (engine/guess_budget.py).
Each row is sampled in order as if decoded alone; the guess holds up to the first row whose
sampled token differs from it, so one step may yield several tokens and the output is the same
as without the guess.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from tensorsharp import kernels
from tensorsharp.config import DEFAULT_DRAFT_MAX
from tensorsharp.engine import guess_budget
from tensorsharp.engine.batch import Stepper
from tensorsharp.engine.draft import PromptLookup
from tensorsharp.engine.draft_model import DraftModel
from tensorsharp.engine.kv_cache import KVCache, common_prefix
from tensorsharp.engine.request import (Done, Embedded, Failed, GenerationRequest, Handle, Queued, QueueFullError,
                                        Sink, Started, Token, check_pooling)
from tensorsharp.engine.sampler import Sample, Sampler, sample_rows
from tensorsharp.engine.stop import StopMatcher
from tensorsharp.engine.thread import EngineThread, engine_error, fair_group
from tensorsharp.errors import ContextFullError, TensorSharpError

log = logging.getLogger(__name__)

# Rows of a decode step the few-token gemm takes at about the cost of one (its register path's
# width); drafted rows only fill what the decoding requests leave of them.
FEW_ROWS = 16


def _keys(req: GenerationRequest) -> list:
    """What each prompt position holds, for comparing prompts: a token id, or (image digest, row)
    so that a position matches only the same row of the same image."""
    keys = list(req.prompt)
    for im in req.images:
        keys[im.start:im.start + im.n_tokens] = [(im.digest, i) for i in range(im.n_tokens)]
    return keys


def _pooled_rows(pooling: str, first: int, start: int, n: int, last: bool) -> list[int]:
    """Batch rows of a prompt chunk (batch rows first.., positions start..) that a pooling reads."""
    if pooling == "mean":
        return list(range(first, first + n))
    if pooling == "cls":
        return [first] if start == 0 else []
    return [first + n - 1] if last else []


def _image_start(keys: list, n: int) -> int:
    """n, moved back to the start of the image it falls inside: an image is cached whole or not at all."""
    if n < len(keys) and isinstance(keys[n], tuple):
        return n - keys[n][1]
    return n


@dataclass
class _Slot:
    index: int
    tokens: list = field(default_factory=list)       # keys (see _keys) of positions [0, len) in order
    session: str | None = None
    last_used: int = -1                               # LRU clock; -1 never used
    busy: bool = False


class _PerRequest:
    """What serving one request needs besides a slot: its sampler, text decoder, stop matcher and
    constraint mask. Built on submit, so a value they refuse fails the caller there and never
    reaches the engine thread holding a slot."""

    def __init__(self, req: GenerationRequest, tokenizer, n_vocab: int, speculative: bool,
                 drafter: DraftModel | None):
        self.lookup = PromptLookup(req.prompt) if speculative else None
        # The draft model sees tokens only: a prompt with images is left to prompt lookup.
        self.follower = drafter.follow(req.prompt) if drafter is not None and not req.images else None
        self.sampler = Sampler(req.sampling, history=[t for t in req.prompt if t >= 0])
        self.decoder = tokenizer.stream(at_start=False, shown=req.shown)
        self.matcher = StopMatcher(req.stop) if req.stop else None
        self.mask = np.zeros((n_vocab + 31) // 32, dtype=np.uint32) if req.constraint is not None else None


@dataclass
class _Waiting:
    handle: Handle
    submitted: int
    parts: _PerRequest
    told: int = 0   # last queue position sent to the sink


class _Active:
    """A request being served: its slot, sampler, text state and timings."""

    def __init__(self, w: _Waiting, slot: _Slot, keys: list, keep: int):
        req = w.handle.request
        self.handle = w.handle
        self.req = req
        self.slot = slot
        self.cached = keep
        self.todo = keys[keep:]               # keys (ids or image rows) still to evaluate into the slot
        self.images = {im.digest: im for im in req.images}
        self.decoding = False                 # True once the prompt is in and tokens are sampled
        self.generated = 0
        self.sampler = w.parts.sampler
        self.decoder = w.parts.decoder
        self.matcher = w.parts.matcher
        self.mask = w.parts.mask
        self.lookup = w.parts.lookup
        self.follower = w.parts.follower
        self.draft: list[int] = []            # tokens guessed to follow todo[0], in this step's rows
        self.guesser = None                   # what made this step's guess (lookup or follower)
        self.unrowed: int | None = None       # the first token of a lookup guess given no rows this step
        self.t_submit = w.submitted
        self.t_admit = time.monotonic_ns()
        self.t_first = self.t_admit
        self.pooled = None                    # embedding requests: the sum (mean), or the row, pooled so far


class Scheduler(EngineThread):
    """Serves GenerationRequests on one engine thread. The stepper's cache needs >= parallel slots.
    speculative: decoding requests verify prompt-lookup guesses in their steps; the stepper must
    give a row the same logits alone and in any batch, or outputs would change with the guesses.
    costs: the stepper's step-cost curve that guesses are weighed against (default: measured on
    the cache's empty slots; slot 0 at least must be empty). drafter: a draft model whose cache
    has a slot per slot of the stepper's."""

    def __init__(self, stepper, tokenizer, parallel: int = 1, max_queue: int = 16, speculative: bool = False,
                 costs: guess_budget.StepCosts | None = None, drafter: DraftModel | None = None):
        super().__init__()
        self.stepper = stepper
        self.speculative = speculative
        self.max_rows = min(FEW_ROWS, stepper.n_batch)
        if speculative and costs is None:
            costs = guess_budget.step_costs(stepper, min(self.max_rows, stepper.cache.n_ctx))
            log.info("guessed rows are weighed against these step costs (rows: x one row): %s", costs)
        self.costs = costs
        self.drafter = drafter if speculative else None   # guesses where prompt lookup has none
        self.drafted = 0     # guessed tokens verified, engine thread's count
        self.accepted = 0    # of which held
        self.cache = stepper.cache
        self.tokenizer = tokenizer
        self.n_vocab = stepper.model.hparams.n_vocab
        if not 1 <= parallel <= self.cache.n_seq:
            raise ValueError(f"parallel must be between 1 and the cache's {self.cache.n_seq} slots")
        if max_queue < 0:
            raise ValueError("max_queue must not be negative")
        self.parallel = parallel
        self.max_queue = max_queue
        self.slots = [_Slot(i) for i in range(self.cache.n_seq)]
        self._waiting: deque[_Waiting] = deque()
        self._active: list[_Active] = []
        self._clock = 0
        self._starting = 0   # taken from the queue, not yet active
        self._processed = 0  # requests that were started and have left the engine, however they ended
        self._unflushed: dict[int, Handle] = {}   # handles whose sinks were put events since the last flush

    @property
    def n_ctx(self) -> int:
        return self.cache.n_ctx

    # -- caller side (any thread) --------------------------------------------------------------
    def submit(self, request: GenerationRequest, sink: Sink) -> Handle:
        """Queues a request; its events go to sink on the engine thread. QueueFullError when full;
        ValueError for sampling options the vocabulary cannot take or images that do not fit."""
        request.sampling.validate(self.n_vocab)
        check_pooling(request.pooling)
        self._check_images(request)
        parts = _PerRequest(request, self.tokenizer, self.n_vocab, self.speculative, self.drafter)
        handle = Handle(request, sink, self._kick)
        with self._mutex:
            if self._closing:
                raise TensorSharpError("the scheduler is shut down")
            # Requests that free active places will take at once do not count against the queue.
            free = self.parallel - len(self._active) - self._starting
            # A request's n choices take one place in the queue between them.
            queued = {fair_group(w.handle.request) for w in self._waiting}
            if fair_group(request) not in queued and len(queued) >= self.max_queue + free:
                raise QueueFullError(f"the queue is full ({self.max_queue} requests waiting)")
            self._waiting.append(_Waiting(handle, time.monotonic_ns(), parts))
        self._kick()
        return handle

    def _check_images(self, req: GenerationRequest) -> None:
        """Images must fill exactly the prompt's -1 positions, each fit one step beside the other
        requests' decoding rows (an image is never split), and match the model's width."""
        n_embd = self.stepper.model.hparams.n_embd
        fit = self.stepper.n_batch - (self.parallel - 1)
        filled = set()
        for im in req.images:
            span = range(im.start, im.start + im.n_tokens)
            if im.embd.ndim != 2 or im.embd.shape[1] != n_embd:
                raise ValueError(f"image embeddings must be (n, {n_embd}), not {im.embd.shape}")
            if not 0 < im.n_tokens <= fit:
                raise ValueError(f"an image of {im.n_tokens} tokens does not fit a batch of {fit}")
            if im.start < 0 or span.stop > len(req.prompt) or filled.intersection(span) \
                    or any(req.prompt[p] != -1 for p in span):
                raise ValueError("image positions must be -1 placeholders of the prompt, without overlap")
            filled.update(span)
        if sum(1 for t in req.prompt if t == -1) != len(filled):
            raise ValueError("the prompt has -1 positions no image fills")

    def status(self) -> dict:
        with self._mutex:
            return {"pending": len(self._waiting), "active": len(self._active) + self._starting,
                    "parallel": self.parallel, "capacity": self.max_queue, "processed": self._processed}

    def _busy(self) -> bool:
        return bool(self._active or self._waiting)

    # -- engine thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                self._beat = time.monotonic()
                try:
                    if not self._serve_once():
                        return
                except Exception as e:   # a bug must fail the requests it hit, not hang every client
                    log.exception("engine loop failed")
                    for a in list(self._active):
                        self._reset(a.slot)
                        self._fail(a, TensorSharpError(f"engine failure: {e}"))
        finally:
            self._beat = None
            with self._mutex:
                waiting, self._waiting = list(self._waiting), deque()
            stopped = TensorSharpError("the server is shutting down")
            for w in waiting:
                self._send(w.handle, Failed(stopped))
            for a in list(self._active):
                self._fail(a, stopped)
            self._flush()
            self._exited.release()

    def _serve_once(self) -> bool:
        """Admits what fits and runs one step (or sleeps until there is work); False once closing."""
        with self._mutex:
            if self._closing:
                return False
            events, admitted = self._admit()
        for handle, event in events:
            self._send(handle, event)
        # Slots are chosen outside the mutex: copying a cached prefix may take a while.
        for w in admitted:
            for handle, event in self._start(w):
                self._send(handle, event)
        self._drop_cancelled()
        if self._active:
            self._step()
        else:
            self._flush()
            self._wake.acquire(timeout=1.0)
        return True

    def _send(self, handle: Handle, event) -> None:
        try:
            if handle.put is None:
                handle.sink(event)
            else:
                handle.put(event)
                self._unflushed[id(handle)] = handle
        except Exception:  # a broken consumer must not take the engine down with it
            log.exception("request sink failed; cancelling the request")
            handle.cancelled = True

    def _flush(self) -> None:
        """Wakes the consumers of the events put since the last flush, once each. Done as late as
        can be before the forward step releases the GIL (or the thread waits for work): a consumer
        thread woken earlier, in the middle of the step's Python, would find the GIL held, sleep
        again and take it only when the step releases it, two wake-ups per token instead of one."""
        pending, self._unflushed = self._unflushed, {}
        for handle in pending.values():
            try:
                handle.sink.flush()
            except Exception:
                log.exception("request sink failed; cancelling the request")
                handle.cancelled = True

    def _admit(self) -> tuple[list, list[_Waiting]]:
        """Under the mutex: drops cancelled waiters, takes those there is room for and updates
        queue positions. Returns (events to send, requests to start)."""
        events = []
        kept = deque()
        for w in self._waiting:
            if w.handle.cancelled:
                now = time.monotonic_ns()
                events.append((w.handle, Done("cancelled", len(w.handle.request.prompt), 0, 0,
                                              0, 0, now - w.submitted, now - w.submitted)))
            else:
                kept.append(w)
        self._waiting = kept
        admitted = []
        if self._waiting and len(self._active) < self.parallel:
            # Fair shares: the next place goes to the waiter whose group (the n choices of one
            # request) holds the fewest places, first come first served among equals, so one
            # request's many choices cannot keep everyone else waiting.
            held: dict = {}
            for a in self._active:
                held[fair_group(a.req)] = held.get(fair_group(a.req), 0) + 1
            while self._waiting and len(self._active) + len(admitted) < self.parallel:
                w = min(self._waiting, key=lambda w: held.get(fair_group(w.handle.request), 0))
                self._waiting.remove(w)
                held[fair_group(w.handle.request)] = held.get(fair_group(w.handle.request), 0) + 1
                admitted.append(w)
        self._starting = len(admitted)
        for i, w in enumerate(self._waiting, start=1):
            if w.told != i:
                w.told = i
                events.append((w.handle, Queued(i)))
        return events, admitted

    def _start(self, w: _Waiting) -> list:
        """Makes a taken waiter active, or ends it: whatever goes wrong fails this request alone,
        with no slot left busy and the counts of starting and processed requests right."""
        slot, became_active = None, False
        try:
            req, handle = w.handle.request, w.handle
            n = len(req.prompt)
            if n == 0:
                return [(handle, Failed(TensorSharpError("the prompt has no tokens")))]
            if n >= self.n_ctx:
                return [(handle, Failed(ContextFullError(
                    f"the prompt is {n} tokens but the context holds {self.n_ctx} (prompt and reply together)")))]
            if req.max_tokens <= 0 and req.pooling is None:
                now = time.monotonic_ns()
                return [(handle, Started(n, 0)),
                        (handle, Done("length", n, 0, 0, 0, 0, now - w.submitted, now - w.submitted))]
            keys = _keys(req)
            slot, keep = self._choose_slot(req, keys)
            slot.busy = True
            slot.session = req.session
            a = _Active(w, slot, keys, keep)
            with self._mutex:
                self._active.append(a)
            slot, became_active = None, True
            return [(handle, Started(n, keep))]
        except Exception as e:
            log.exception("starting a request failed")
            if slot is not None:
                self._reset(slot)
                slot.busy = False
            return [(w.handle, Failed(engine_error(e)))]
        finally:
            with self._mutex:
                self._starting -= 1
                self._processed += not became_active   # ended here; an active one counts on release

    def _choose_slot(self, req: GenerationRequest, keys: list) -> tuple[_Slot, int]:
        """The slot to serve req, already holding only the prefix it keeps, and that prefix's length.

        The session's own slot if idle; else the idle slot sharing the longest prefix with the
        prompt; else the least recently used idle slot. A prefix held by another session's slot,
        or one that is less than half of what its slot holds (another conversation that only
        opens the same way, e.g. with the same system prompt), is copied into the LRU slot instead
        of taking that slot, so the conversation there keeps its cache for its next turn."""
        idle = [s for s in self.slots if not s.busy]

        def reusable(s: _Slot) -> int:   # the last prompt token is always evaluated again
            if not req.reuse_prefix or req.pooling is not None:   # pooling reads every row's state
                return 0
            return _image_start(keys, min(common_prefix(s.tokens, keys), len(keys) - 1))

        own = next((s for s in idle if req.session is not None and s.session == req.session), None)
        if own is not None:
            return self._keep(own, reusable(own)), reusable(own)
        lru = min(idle, key=lambda s: s.last_used)
        best = max(idle, key=lambda s: (reusable(s), s is lru))
        n = reusable(best)
        if n == 0:
            return self._keep(lru, 0), 0
        if best is lru or (best.session is None and len(best.tokens) - n <= n):
            return self._keep(best, n), n
        self.cache.copy_prefix(best.index, lru.index, n)
        lru.tokens = best.tokens[:n]
        return lru, n

    def _reset(self, slot: _Slot) -> None:
        """Forgets what a slot holds (its cache may be half written)."""
        self.cache.truncate(slot.index, 0)
        slot.tokens.clear()

    def _keep(self, slot: _Slot, n: int) -> _Slot:
        del slot.tokens[n:]
        self.cache.truncate(slot.index, n)
        return slot

    def _release(self, a: _Active) -> None:
        self._clock += 1
        a.slot.busy = False
        a.slot.last_used = self._clock
        with self._mutex:
            self._active.remove(a)
            self._processed += 1

    def _done(self, a: _Active, reason: str) -> Done:
        now = time.monotonic_ns()
        first = a.t_first if a.decoding else now
        return Done(reason, len(a.req.prompt), a.cached, a.generated, first - a.t_admit,
                    now - first, now - a.t_submit, a.t_admit - a.t_submit)

    def _finish(self, a: _Active, reason: str) -> None:
        self._release(a)
        self._send(a.handle, self._done(a, reason))

    def _fail(self, a: _Active, error: TensorSharpError) -> None:
        self._release(a)
        self._send(a.handle, Failed(error))

    def _drop_cancelled(self) -> None:
        for a in list(self._active):
            if a.handle.cancelled:
                self._finish(a, "cancelled")

    def _step(self) -> None:
        """One forward pass: each decoding request's last token, then prompt chunks in admission order."""
        keys, pos, seq, rows, owners = [], [], [], [], []
        sampling = []   # (request, index in rows of the first row it samples)
        hid_rows, hid_of = [], {}   # embedding requests' rows whose final hidden state they pool
        budget = self.stepper.n_batch
        self._guess()
        for a in self._active:
            if a.decoding:
                n = 1 + len(a.draft)
                start = self.cache.reserve(a.slot.index, n)
                keys += a.todo[:1] + a.draft
                pos += range(start, start + n)
                seq += [a.slot.index] * n
                sampling.append((a, len(rows)))
                rows += range(len(keys) - n, len(keys))
                owners.append((a, n))
                budget -= n
        for a in self._active:
            if a.decoding or budget <= 0:
                continue
            n = min(budget, len(a.todo))
            if n < len(a.todo):
                n = _image_start(a.todo, n)   # an image's rows go in one step, so they see each other
                if n == 0:
                    continue                  # waits for a step with room for the whole image
            chunk = a.todo[:n]
            start = self.cache.reserve(a.slot.index, len(chunk))
            first = len(keys)
            keys += chunk
            pos += range(start, start + len(chunk))
            seq += [a.slot.index] * len(chunk)
            if a.req.pooling is not None:
                wanted = _pooled_rows(a.req.pooling, first, start, len(chunk), len(chunk) == len(a.todo))
                hid_of[id(a)] = (len(hid_rows), len(wanted))
                hid_rows += wanted
            elif len(chunk) == len(a.todo):
                sampling.append((a, len(rows)))
                rows.append(len(keys) - 1)
            owners.append((a, len(chunk)))
            budget -= len(chunk)
        hidden = None
        try:
            tokens, embd, attn_end = self._batch_inputs(keys, pos, owners)
            self._flush()
            if hid_rows:
                logits, hidden = self.stepper.step(tokens, pos, seq, rows, embd=embd, attn_end=attn_end,
                                                   hidden_rows=hid_rows)
            else:
                logits = self.stepper.step(tokens, pos, seq, rows, embd=embd, attn_end=attn_end)
        except Exception as e:
            log.exception("forward step failed")
            for a, _ in owners:
                self._reset(a.slot)
                self._fail(a, engine_error(e))
            return
        first = self._sample_first_rows(sampling, logits)
        row = 0
        for a, n in owners:
            if a.decoding:
                try:
                    self._verify(a, logits[row:row + n], first.get(id(a)))
                except Exception as e:   # a bug hit by one request's sampling fails that request alone
                    log.exception("sampling failed")
                    if a in self._active:
                        self._reset(a.slot)
                        self._fail(a, engine_error(e))
                row += n
                continue
            a.slot.tokens.extend(a.todo[:n])
            del a.todo[:n]
            if a.req.pooling is not None:
                h0, count = hid_of[id(a)]
                self._pool(a, hidden[h0:h0 + count] if count else None)
                continue
            if a.todo:
                continue   # more of the prompt to go: this chunk produced no logits
            a.decoding = True
            a.t_first = time.monotonic_ns()
            try:
                tok = self._sample(a, logits[row], first.get(id(a)))
                if tok is not None:
                    a.todo = [tok]
            except Exception as e:   # a bug hit by one request's sampling fails that request alone
                log.exception("sampling failed")
                if a in self._active:
                    self._fail(a, engine_error(e))
            row += 1

    def _pool(self, a: _Active, states: np.ndarray | None) -> None:
        """Adds a chunk's hidden states to an embedding request's pool; at the prompt's end sends
        the pooled vector and finishes it."""
        if states is not None and len(states):
            part = states.sum(axis=0, dtype=np.float64) if a.req.pooling == "mean" else states[-1].astype(np.float64)
            a.pooled = part if a.pooled is None or a.req.pooling != "mean" else a.pooled + part
        if a.todo:
            return
        vector = a.pooled / len(a.req.prompt) if a.req.pooling == "mean" else a.pooled
        self._send(a.handle, Embedded(vector.astype(np.float32)))
        self._finish(a, "stop")

    def _guess(self) -> None:
        """Sets each decoding request's guess for this step. None while a prompt is being evaluated
        (its rows already take the step past the few-token width); else each request proposes what
        its max_tokens and the context leave room for after the token its last row yields (prompt
        lookup's guess, or where it has none and a draft model is loaded, as many tokens as the
        draft would make), and the budget decides how much of each proposal gets rows. The draft
        model then drafts only what got rows, for all those requests together."""
        decoding = [a for a in self._active if a.decoding]
        for a in decoding:
            a.draft, a.unrowed, a.guesser = [], None, None
        if not self.speculative or len(decoding) != len(self._active) or len(decoding) >= self.max_rows:
            return
        rooms = [min(a.req.max_tokens - a.generated - 1, self.n_ctx - int(self.cache.length[a.slot.index]) - 1)
                 for a in decoding]
        proposed = [a.lookup.propose(room) for a, room in zip(decoding, rooms)]
        lengths, rates = [], []
        for a, room, guess in zip(decoding, rooms, proposed):
            a.guesser = a.lookup if guess or a.follower is None else a.follower
            lengths.append(len(guess) if a.guesser is a.lookup else max(0, min(room, self.drafter.draft_max)))
            rates.append(a.guesser.rate)
        if not any(lengths):
            return
        counts = guess_budget.allot(len(decoding), rates, lengths, self.costs, self.max_rows)
        asks = []
        for a, guess, n in zip(decoding, proposed, counts):
            if a.guesser is a.follower:
                if n:
                    asks.append((a, n))
                continue
            a.draft = guess[:n]
            if guess and not n:
                a.unrowed = guess[0]
        if asks:
            drafts = self.drafter.propose([(a.follower, a.slot.index, n) for a, n in asks])
            for (a, _), draft in zip(asks, drafts):
                a.draft = draft

    def _sample_first_rows(self, sampling: list, logits: np.ndarray) -> dict:
        """The first row each request samples in this step (sampling: (request, its logits row)),
        drawn together when there are several (sampler.sample_rows: the calls share the pool's
        threads), by id of the request's _Active. A request's later rows, its guesses, depend on
        the first and go one by one; so do rows a constraint masks, since the mask follows the
        constraint's state."""
        jobs = [(a, logits[i]) for a, i in sampling if a.req.constraint is None]
        if len(jobs) < 2:
            return {}
        try:
            samples = sample_rows([(a.sampler, lg) for a, lg in jobs], self.stepper.n_threads)
        except Exception:   # a bug here must not end the step: each row is then sampled alone,
            log.exception("sampling rows together failed")   # where it fails its own request
            return {}
        return {id(a): s for (a, _), s in zip(jobs, samples)}

    def _verify(self, a: _Active, logits: np.ndarray, first: Sample | None = None) -> None:
        """Samples A's rows (its last token's, then one per guessed token) in order, each as if
        decoded alone: a row's token that equals the next guessed token means that guess holds
        (its K/V, already written, is kept), anything else ends the step for A. Rejected rows'
        positions are given back, so the cache holds only accepted tokens and the next step
        overwrites the rest before anything can attend to them."""
        idx, draft = a.slot.index, a.draft
        self.cache.truncate(idx, int(self.cache.length[idx]) - len(draft))
        a.slot.tokens.append(a.todo.pop())
        # Counted as they are decided: a caller reading the counts once its Done arrives (sent from
        # _sample, mid-step) finds all of its request's guesses in them.
        drafter = self.drafter if draft and a.guesser is a.follower else None
        self.drafted += len(draft)
        if drafter is not None:
            drafter.proposed += len(draft)
        held, missed = 0, False
        for i in range(len(draft) + 1):
            tok = self._sample(a, logits[i], first if i == 0 else None)
            if tok is None:
                break
            if i < len(draft) and tok == draft[i]:
                self.cache.reserve(idx, 1)
                a.slot.tokens.append(tok)
                held += 1
                self.accepted += 1
                if drafter is not None:
                    drafter.accepted += 1
                continue
            a.todo = [tok]
            missed = i < len(draft)
            break
        if draft:
            a.guesser.record(held, missed)
        elif a.unrowed is not None and tok is not None:
            a.lookup.record(int(tok == a.unrowed), tok != a.unrowed)

    def _batch_inputs(self, keys: list, pos: list[int], owners: list) -> tuple:
        """Token ids (-1 for image rows), then the image rows' embeddings and attention ends, or
        None for each when the batch has no image row."""
        tokens = [-1 if isinstance(k, tuple) else k for k in keys]
        if -1 not in tokens:
            return tokens, None, None
        embd = np.zeros((len(keys), self.stepper.model.hparams.n_embd), dtype=np.float32)
        attn_end = [p + 1 for p in pos]
        row = 0
        for a, n in owners:
            for t in range(row, row + n):
                if tokens[t] == -1:
                    digest, i = keys[t]
                    im = a.images[digest]
                    embd[t] = im.embd[i]
                    if im.bidirectional:
                        attn_end[t] = pos[t] - i + im.n_tokens
            row += n
        return tokens, embd, attn_end

    def _sample(self, a: _Active, logits: np.ndarray, drawn: Sample | None = None) -> int | None:
        """Samples (or takes the drawn sample of this row), accounts and emits a token; returns it if
        the request goes on, else None.

        With a guess, standard speculative sampling against a draft that is a point mass on the
        guessed token d accepts d with probability p(d) and otherwise samples p without d,
        renormalised. Sampling p and accepting d exactly when the draw is d is that same
        distribution, so each row draws once as plain decoding would: the penalties' window, the
        constraint and the seed's stream all advance over the accepted tokens only."""
        req = a.req
        c = req.constraint
        if drawn is not None:
            s = drawn
        else:
            if c is not None:
                c.fill_mask(a.mask)
            s = a.sampler.sample(logits, a.mask)
        tok = s.token
        a.sampler.accept(tok)
        try:
            if c is not None:
                c.accept(tok)
        except TensorSharpError as e:
            self._fail(a, e)
            return None
        if a.handle.cancelled:
            self._finish(a, "cancelled")
            return None
        a.generated += 1
        if req.stop_at_eog and self.tokenizer.is_eog(tok):
            self._emit_last(a, s, "", "stop")
            return None
        piece = a.decoder.feed(tok)
        text = a.matcher.feed(piece) if a.matcher is not None else piece
        if a.matcher is not None and a.matcher.stopped:
            self._emit(a, s, text)
            self._finish(a, "stop")
        elif c is not None and c.is_done():
            self._emit_last(a, s, text, "stop")
        elif a.generated >= req.max_tokens or self.cache.length[a.slot.index] >= self.n_ctx:
            # Also at a full context: the token could not be fed back, so it is the last one.
            self._emit_last(a, s, text, "length")
        else:
            self._emit(a, s, text)
            if a.lookup is not None:
                a.lookup.append(tok)
            if a.follower is not None:
                a.follower.append(tok)
            return tok
        return None

    def _emit(self, a: _Active, s, text: str) -> None:
        self._send(a.handle, Token(s.token, text, s.logprob, s.top))

    def _emit_last(self, a: _Active, s, text: str, reason: str) -> None:
        """The final token's event also carries the text the decoder and stop matcher held back."""
        rest = a.decoder.flush()
        if a.matcher is not None:
            rest = a.matcher.feed(rest) + a.matcher.flush()
        self._emit(a, s, text + rest)
        self._finish(a, reason)


def build(transformer, tokenizer, n_ctx: int, parallel: int = 1, cache_slots: int = 2,
          max_queue: int = 16, n_batch: int = 512, n_threads: int = 0, speculative: bool = True,
          costs: guess_budget.StepCosts | None = None, draft=None,
          draft_max: int = DEFAULT_DRAFT_MAX, kv_cache_type: str = "f16") -> Scheduler:
    """A scheduler over a fresh KV cache of parallel + cache_slots sequences (not started yet).
    costs: see Scheduler.
    Speculation stays off where a weight type's kernels give a row other bits alone than in a
    batch (gemm without a one-row path: AVX2, Q2_K, Q3_K), since guesses would then change outputs.
    draft: the Transformer of a draft model sharing the vocabulary (draft_model.check_vocab),
    guessing up to draft_max tokens at a time where prompt lookup has no guess. kv_cache_type: f16,
    q8_0 or q4_0 (kv_cache.KVCache); the draft model's cache stays f16."""
    if cache_slots < 0:
        raise ValueError("cache_slots must not be negative")
    cache = KVCache(transformer, n_ctx, n_seq=parallel + cache_slots, cache_type=kv_cache_type)
    transformer.use_context(n_ctx)  # LongRoPE picks its factors by the context of a sequence
    if speculative and not kernels.rows_exact(t.type.id for t in transformer.gguf.tensors.values()):
        log.info("speculative decoding is off: this CPU's kernels for the model's weight types "
                 "score a row differently alone and in a batch")
        speculative = False
    drafter = None
    if speculative and draft is not None:
        drafter = DraftModel(draft, n_ctx, cache.n_seq, transformer.hparams.n_vocab, n_batch=n_batch,
                             n_threads=n_threads, draft_max=draft_max)
    return Scheduler(Stepper(transformer, cache, n_batch=n_batch, n_threads=n_threads), tokenizer,
                     parallel=parallel, max_queue=max_queue, speculative=speculative, costs=costs,
                     drafter=drafter)
