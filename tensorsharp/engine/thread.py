"""The life of an engine thread, shared by the schedulers: a real OS thread with real locks, started
once, woken when work arrives, stopped by close(), and watched by stalled()."""
from __future__ import annotations

import importlib
import sys
import time

from tensorsharp.engine.request import GenerationRequest
from tensorsharp.errors import TensorSharpError


def original(module: str, name: str):
    """An unpatched threading primitive. Under gevent's monkey patching threads are greenlets and
    locks are greenlet locks; the engine must be a real OS thread with real locks."""
    if "gevent.monkey" in sys.modules:
        from gevent import monkey
        return monkey.get_original(module, name)
    return getattr(importlib.import_module(module), name)


def fair_group(req: GenerationRequest):
    """What shares fairly: the request's group (its sibling choices), else the request itself."""
    return req.group if req.group is not None else id(req)


class EngineThread:
    """Subclasses run their loop in _run (setting _beat at each turn, to None when it ends, and
    releasing _exited last) and say in _busy whether they hold work."""

    def __init__(self):
        self._closing = False
        lock = original("_thread", "allocate_lock")
        self._mutex = lock()     # guards the subclass's queues and counts, and _closing
        self._wake = lock()      # released to wake an idle engine thread; held while nothing to do
        self._wake.acquire()
        self._exited = lock()    # held while the engine thread runs
        self._started = False
        self._beat: float | None = None   # when the engine loop last began a turn; None: not running

    def start(self):
        if not self._started:
            self._started = True
            self._exited.acquire()
            self._beat = time.monotonic()
            original("_thread", "start_new_thread")(self._run, ())
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stops the engine thread after its current turn; requests still queued are not served."""
        with self._mutex:
            self._closing = True
        self._kick()
        if self._started and self._exited.acquire(timeout=timeout):
            self._exited.release()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def stalled(self, after: float) -> str | None:
        """Why the engine is not serving, or None: its thread ended without close(), or it has
        had work and no turn of its loop finished for `after` seconds (a forward step wedged)."""
        beat = self._beat
        if not self._started:
            return None
        if beat is None:
            return None if self._closing else "the engine thread stopped"
        with self._mutex:
            busy = self._busy()
        idle_for = time.monotonic() - beat
        if busy and idle_for > after:
            return f"the engine has made no progress for {idle_for:.0f} s"
        return None

    def _kick(self) -> None:
        try:
            self._wake.release()
        except RuntimeError:
            pass  # already awake; one pending wake-up is enough

    def _busy(self) -> bool:
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError


def engine_error(e: Exception) -> TensorSharpError:
    """What a request whose work raised e fails with: e where it is ours, else an engine failure."""
    return e if isinstance(e, TensorSharpError) else TensorSharpError(f"engine failure: {e}")
