"""The models a server has loaded: each loaded on demand off the hub (requests for a model being
loaded wait for that one load), within a count and a memory budget that the least recently used
idle model makes room in, and unloaded keep_alive seconds after its last request ends.

The budget is the process's memory: what the process held before any model (measured when the
pool is made) plus each model's counted bytes (ServedModel.memory_bytes). Where a resident-size
reader is given, the measured size is also checked after every load and whenever a model becomes
idle, and idle models go while it is over the budget (what no count sees: allocator leftovers,
caches that grow with use).

Everything here runs on the gevent hub's greenlets (no locks needed); only loading and closing a
model, which take seconds, run on worker threads.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import gevent
from gevent.event import AsyncResult

from tensorsharp.server.catalog import Spec
from tensorsharp.server.errors import ApiError
from tensorsharp.server.model import ServedModel
from tensorsharp.server.protocol.duration import FOREVER

log = logging.getLogger(__name__)

# What /api/ps shows for a model kept forever (keep_alive < 0): a date no client waits for.
FAR_FUTURE = timedelta(days=365 * 100)


@dataclass(eq=False)
class Loaded:
    served: ServedModel | None      # None once unloaded (so that nothing here keeps its memory)
    size: int                       # bytes it holds (ServedModel.memory_bytes), as of its last request
    keep_alive: float               # seconds it stays after its last request (FOREVER: no end)
    default_keep: float             # keep_alive of requests that give none: the server's, or
                                    # FOREVER for the models named at start
    in_use: int = 0                 # requests holding it; never evicted while above 0
    leaving: bool = False           # unload asked while in use: goes when the last request ends
    last_used: float = field(default_factory=time.monotonic)
    expires_at: datetime | None = None   # wall clock, for /api/ps: set when it last became idle
    timer: gevent.Greenlet | None = None
    name: str = field(init=False)

    def __post_init__(self):
        self.name = self.served.name

    def expiry(self) -> datetime:
        """When it will be unloaded if no request comes (while in use: that long after now)."""
        if self.in_use or self.expires_at is None:
            ahead = FAR_FUTURE if self.keep_alive == FOREVER else timedelta(seconds=self.keep_alive)
            return datetime.now(timezone.utc) + ahead
        return self.expires_at


class ModelPool:
    """acquire(spec) a model for a request, release() it when the response ends."""

    def __init__(self, load: Callable[[Spec], ServedModel], estimate: Callable[[Spec], int],
                 max_loaded: int, max_memory: int, keep_alive: float, resident: Callable[[], int] | None = None):
        self._load_fn = load          # runs on a worker thread
        self._estimate = estimate     # bytes a spec will take once loaded; runs on a worker thread
        self.max_loaded = max(1, max_loaded)
        self.max_memory = max_memory  # 0: no limit
        self.keep_alive = keep_alive
        self._resident = resident     # the process's resident bytes now (None: counts alone)
        self.base = resident() if resident is not None else 0   # the process without models
        self._loaded: dict[str, Loaded] = {}
        self._loading: dict[str, tuple[AsyncResult, int]] = {}   # name -> (its load, bytes reserved)

    # -- requests ----------------------------------------------------------------------------------
    def acquire(self, spec: Spec) -> ServedModel:
        entry = self._loaded.get(spec.name)
        if entry is not None and entry.served.spec != spec and not entry.in_use:
            self._unload(entry)   # its name was given a new system prompt, template or file
            entry = None
        if entry is None:
            entry = self._load(spec)
        entry.in_use += 1
        entry.last_used = time.monotonic()
        self._cancel_timer(entry)
        return entry.served

    def release(self, served: ServedModel, keep_alive: float | None = None) -> None:
        entry = self._loaded.get(served.name)
        if entry is None or entry.served is not served:
            return   # unloaded while the request ran (the server is stopping)
        entry.in_use -= 1
        entry.last_used = time.monotonic()
        entry.keep_alive = 0 if entry.leaving else entry.default_keep if keep_alive is None else keep_alive
        entry.size = served.memory_bytes   # a request may have built the constraint vocabulary
        if entry.in_use == 0:
            self._arm(entry)
            self._fit()

    def grow(self, served: ServedModel, extra: int) -> None:
        """Counts extra bytes a model in use is about to take (its constraint vocabulary), first
        unloading least recently used idle models while they would not fit. When only models in
        use are left the request still runs: it holds its model already."""
        entry = self._loaded.get(served.name)
        if entry is None or entry.served is not served:
            return
        while self.max_memory and self.used_bytes() + extra > self.max_memory and (idle := self._idle()):
            self._unload(idle[0])
        entry.size += extra   # release() sets it to the model's own count again

    def pin(self, spec: Spec) -> ServedModel:
        """Loads a model named at start: requests that give no keep_alive leave it loaded (it
        still makes room when idle and least recently used, as any model)."""
        served = self.acquire(spec)
        self._loaded[spec.name].default_keep = FOREVER
        self.release(served)
        return served

    def adopt(self, served: ServedModel) -> None:
        """Serves a model loaded elsewhere (by the caller of create_app) as if pinned here."""
        entry = Loaded(served, served.memory_bytes, FOREVER, FOREVER)
        if self._resident is not None:   # the process was measured with it loaded
            self.base = max(0, self.base - entry.size)
        self._loaded[served.name] = entry
        self._arm(entry)

    def unload(self, name: str) -> bool:
        """Unloads a model now, or (in use) as its last request ends; False if it is not loaded."""
        entry = self._loaded.get(name)
        if entry is None:
            return False
        entry.keep_alive, entry.leaving = 0, True
        if not entry.in_use:
            self._unload(entry)
        return True

    # -- views ---------------------------------------------------------------------------------------
    def loaded(self) -> list[Loaded]:
        """Loaded models, the most recently used first."""
        return sorted(self._loaded.values(), key=lambda e: -e.last_used)

    def get(self, name: str) -> ServedModel | None:
        entry = self._loaded.get(name)
        return entry.served if entry is not None else None

    def used_bytes(self) -> int:
        """The process's counted memory: before any model, and each model loaded or being loaded."""
        return self.base + sum(e.size for e in self._loaded.values()) + sum(r for _, r in self._loading.values())

    def close(self) -> None:
        for entry in list(self._loaded.values()):
            self._cancel_timer(entry)
            entry.served.close()
            entry.served = None
        self._loaded.clear()

    # -- loading and unloading -----------------------------------------------------------------------
    def _load(self, spec: Spec) -> Loaded:
        pending = self._loading.get(spec.name)
        if pending is not None:   # another request is loading it: wait for that load
            return pending[0].get()
        result = AsyncResult()
        self._loading[spec.name] = (result, 0)
        try:
            need = off_hub(self._estimate, spec)
            if self._make_room(spec.name, need):
                off_hub(_trim)   # what the models made room with is free now: hand it back first
            self._loading[spec.name] = (result, need)
            t0 = time.monotonic()
            served = off_hub(self._load_fn, spec)
            log.info("loaded %s in %.1f s (%d MB)", spec.name, time.monotonic() - t0, served.memory_bytes >> 20)
            entry = Loaded(served, served.memory_bytes, self.keep_alive, self.keep_alive)
            self._loaded[spec.name] = entry
            result.set(entry)
            self._fit()
            return entry
        except BaseException as e:
            result.set_exception(e)
            raise
        finally:
            del self._loading[spec.name]

    def _make_room(self, name: str, need: int) -> bool:
        """Unloads least recently used idle models until one more (need bytes) fits; 503 if the
        models in use leave no room. True if it unloaded any."""
        if self.max_memory and self.base + need > self.max_memory:
            raise ApiError(507, f"model {name} needs about {need >> 20} MB, which with the server's own "
                           f"{self.base >> 20} MB is more than the memory budget of {self.max_memory >> 20} MB "
                           f"(TENSORSHARP_MAX_MEMORY)", code="insufficient_memory")
        unloaded = False
        while (len(self._loaded) + len(self._loading) > self.max_loaded
               or (self.max_memory and self.used_bytes() + need > self.max_memory)):
            idle = self._idle()
            if not idle:
                raise ApiError(503, f"cannot load {name}: the loaded models are all serving requests and "
                               f"no more fit; retry shortly", code="models_busy", headers={"Retry-After": "5"})
            self._unload(idle[0], trim=False)
            unloaded = True
        return unloaded

    def _fit(self) -> None:
        """Unloads least recently used idle models while the measured resident size is over the
        budget (the counts keep it under; this catches what they cannot see). The most recently
        used model stays: the budget let it in, and unloading it would only load it again."""
        if not self.max_memory or self._resident is None:
            return
        newest = max(self._loaded.values(), key=lambda e: e.last_used, default=None)
        while (idle := [e for e in self._idle() if e is not newest]) and self._resident() > self.max_memory:
            log.info("resident memory is over the budget of %d MB: unloading %s", self.max_memory >> 20,
                     idle[0].name)
            self._unload(idle[0])

    def _idle(self) -> list[Loaded]:
        """Loaded models without requests, the least recently used first."""
        return sorted((e for e in self._loaded.values() if not e.in_use), key=lambda e: e.last_used)

    def _unload(self, entry: Loaded, trim: bool = True) -> None:
        """trim: hands the freed memory back to the system now (a load that follows does it
        once for every model it made room with)."""
        self._cancel_timer(entry)
        if self._loaded.get(entry.name) is entry:
            del self._loaded[entry.name]
        served, entry.served = entry.served, None
        if served is None:
            return
        # Joining the engine thread and freeing gigabytes take a moment: not on the hub.
        off_hub(served.close)
        del served
        log.info("unloaded %s", entry.name)
        if trim:
            off_hub(_trim)
            # The request that unloaded it (keep_alive 0) may still hold it until its response
            # is sent: trim again after that.
            gevent.spawn_later(1.0, off_hub, _trim)

    def _arm(self, entry: Loaded) -> None:
        """Starts the idle model's keep_alive countdown."""
        self._cancel_timer(entry)
        if entry.keep_alive == FOREVER:
            entry.expires_at = datetime.now(timezone.utc) + FAR_FUTURE
            return
        entry.expires_at = datetime.now(timezone.utc) + timedelta(seconds=entry.keep_alive)
        if entry.keep_alive <= 0:
            self._unload(entry)
        else:
            entry.timer = gevent.spawn_later(entry.keep_alive, self._expire, entry)

    def _expire(self, entry: Loaded) -> None:
        entry.timer = None
        if not entry.in_use and self._loaded.get(entry.name) is entry:
            self._unload(entry)

    @staticmethod
    def _cancel_timer(entry: Loaded) -> None:
        if entry.timer is not None and entry.timer is not gevent.getcurrent():
            entry.timer.kill(block=False)
        entry.timer = None


def off_hub(fn, *args):
    """fn(*args) on a worker thread. Its exception is raised here, to the caller, and not also
    printed as an unhandled error by gevent's hub, as a task's exception otherwise is."""
    def call():
        try:
            return fn(*args), None
        except Exception as e:   # handed to the caller as it is
            return None, e
    result, error = gevent.get_hub().threadpool.apply(call)
    if error is not None:
        raise error
    return result


def _trim() -> None:
    """Frees what unloaded models left and hands it back to the system."""
    gc.collect()   # the model's arrays can sit in reference cycles; free them now, not at some later collection
    if _LIBC is not None:
        # glibc keeps freed heap for reuse; handing it back lets RSS fall to what is loaded.
        _LIBC.malloc_trim(0)


def resident_bytes() -> int:
    """The process's resident set size (VmRSS), or 0 where /proc does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:   # not glibc (musl, macOS): nothing to trim
        return None


_LIBC = _libc()
