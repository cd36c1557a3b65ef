"""The front end's side of the cluster: RayEngine stands where a model's Scheduler stands (submit,
cancel, status, stalled, close), so routes, dialects and the chat layer are the same. submit()
routes the request to a replica actor and a pump thread feeds the actor's streamed events to the
request's sink, as the engine thread would; a monitor thread polls the replicas for load and life.

Replicas are named detached actors, "<model>/<settings>/<index>" in the "tensorsharp" namespace, so
every front end serving a model with the same load settings on one cluster joins the same replicas
(one per host, or several behind any load balancer) and none of them owns their life: the last
front end to leave ends them, and a replica no front end has polled for a lease ends itself.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import tensorsharp
from tensorsharp.cluster.replica import Replica, Wire
from tensorsharp.cluster.router import Router
from tensorsharp.engine.request import (Done, EngineUnavailableError, Failed, GenerationRequest, QueueFullError,
                                        Started, Token, check_pooling)
from tensorsharp.engine.thread import original
from tensorsharp.errors import TensorSharpError

log = logging.getLogger(__name__)

NAMESPACE = "tensorsharp"


def ray_module():
    try:
        import ray
    except ImportError:
        raise TensorSharpError("--ray needs Ray: pip install 'tensorsharp[ray]'") from None
    return ray


def connect(address: str, **local) -> None:
    """Joins the Ray cluster at address ("auto": the one this host belongs to; "local": a private
    one started for this process, on loopback, with ray.init's local arguments, e.g. num_cpus),
    unless this process is connected already."""
    if "gevent.monkey" in sys.modules:
        from gevent import monkey
        if monkey.is_module_patched("threading"):
            # ray.init never returns there: the driver's threads are greenlets, and the first to
            # run blocks the one OS thread in Ray's C++ client (see server.worker).
            raise TensorSharpError("Ray's client cannot run where gevent has monkey-patched threads (gunicorn's "
                                   "gevent worker): use gunicorn -k tensorsharp.server.worker.GeventWorker, "
                                   "or `tensorsharp serve --ray ADDRESS`")
    if address == "local":
        # A private cluster serves this host alone: its services listen on loopback rather than
        # on the host's network address (Ray reads this when first imported).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = ray_module()
    if ray.is_initialized():
        return
    # Ray puts the driver's working directory at the front of its workers' import path. Run from a
    # source checkout, that is the package without its compiled kernels, shadowing the installed
    # one; connecting from the folder this process's own tensorsharp came from makes the workers
    # import what it imports.
    here = os.getcwd()
    os.chdir(Path(tensorsharp.__file__).resolve().parent.parent)
    try:
        if address == "local":
            ray.init(namespace=NAMESPACE, include_dashboard=False, **local)
        else:
            ray.init(address=address, namespace=NAMESPACE)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise TensorSharpError(f"cannot join the Ray cluster at {address}: {e}") from None
    finally:
        os.chdir(here)


def replica_name(spec, load_kw: dict, index: int) -> str:
    """The actor name of a replica: front ends loading the same file with the same settings share
    it; different settings (context, threads, slots) make a set of their own."""
    settings = json.dumps({"file": spec.digest or str(spec.path), **load_kw}, sort_keys=True, default=str)
    return f"{spec.name}/{hashlib.sha256(settings.encode()).hexdigest()[:10]}/{index}"


def _end_this_actor() -> None:
    """A replica's end (see Replica): its actor stops for good, without a restart."""
    ray = ray_module()
    ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


def engine_for(spec, load_kw: dict, replicas: int, stall_seconds: float = 120):
    """ServedModel.load's engine argument: replicas of spec, each loaded with load_kw."""
    def build(transformer, tokenizer, n_ctx: int, **_):
        return RayEngine.launch(spec, load_kw, replicas, n_ctx, transformer.hparams.n_vocab, stall_seconds)
    return build


class RemoteHandle:
    """The caller's grip on a request served by a replica; cancel() may be called from any thread."""

    def __init__(self, request: GenerationRequest, engine: "RayEngine", rid: str):
        self.request = request
        self.rid = rid
        self.replica: int | None = None   # where it is being served
        self.cancelled = False
        self._engine = engine

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self.replica is not None:
                self._engine.actors[self.replica].cancel.remote(self.rid)


@dataclass
class _Progress:
    """What a request has received so far, across the replicas it was sent to."""
    started: bool = False
    reply: list = field(default_factory=list)   # generated token ids


@dataclass
class SlotView:
    """A replica's KV slot as the metrics read it."""
    busy: bool
    tokens: bool   # it holds a prefix


@dataclass
class KVView:
    """What the front end says of the replicas' KV caches: it holds none itself (nbytes 0)."""
    n_ctx: int
    length: np.ndarray   # (replicas,) int: positions each replica's cache holds
    nbytes: int = 0


class RayEngine:
    """Replicas of one model behind a router. Build with RayEngine.launch()."""

    def __init__(self, actors: list, name: str, n_ctx: int, n_vocab: int, parallel: int, max_queue: int,
                 poll_seconds: float = 0.5):
        self.actors = actors
        self.name = name
        self.n_vocab = n_vocab
        self.parallel = parallel * len(actors)
        self.max_queue = max_queue
        self.poll_seconds = poll_seconds
        # A conversation moves (and its prompt is evaluated again elsewhere) only once its replica
        # holds two full batches more than the least loaded one: shorter waits cost less.
        self.router = Router(len(actors), max_imbalance=2 * parallel)
        self._n_ctx = n_ctx
        self.front: str | None = None   # this front end's name to the replicas (launch() sets it)
        self._reports: list[dict | None] = [None] * len(actors)
        self._dead_pid: list[int | None] = [None] * len(actors)   # the incarnation a stream saw die
        self._closing = False
        self._sleep = original("time", "sleep")
        self._spawn = original("_thread", "start_new_thread")
        self._polling = original("_thread", "allocate_lock")()   # held while the monitor thread runs

    @classmethod
    def launch(cls, spec, load_kw: dict, replicas: int, n_ctx: int, n_vocab: int, stall_seconds: float = 120,
               load_timeout: float = 600) -> "RayEngine":
        """Joins replicas 0..replicas-1 of spec on the cluster, starting those no front end runs
        yet, and waits until each has loaded its model. Ray restarts a replica that dies; its
        requests then fail or move."""
        ray = ray_module()
        threads = load_kw.get("n_threads") or 0
        # The engine thread's requests, queued ones and a few status and cancel calls run at once.
        concurrency = load_kw.get("parallel", 1) + load_kw.get("max_queue", 16) + 8
        remote = ray.remote(Replica)
        front = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

        def join(i: int):
            # Detached: a replica outlives the front end that started it while others use it.
            return remote.options(name=replica_name(spec, load_kw, i), namespace=NAMESPACE, get_if_exists=True,
                                  lifetime="detached", num_cpus=threads or 1, max_restarts=-1, max_task_retries=0,
                                  max_concurrency=concurrency).remote(spec, load_kw, stall_seconds, end=_end_this_actor)

        actors, reports = [join(i) for i in range(replicas)], [None] * replicas
        restarts = [0] * replicas
        deadline = time.monotonic() + load_timeout
        while None in reports:
            refs = {i: actors[i].join.remote(front) for i, r in enumerate(reports) if r is None}
            for i, ref in refs.items():
                try:
                    reports[i] = ray.get(ref, timeout=max(1.0, deadline - time.monotonic()))
                except ray.exceptions.RayActorError as e:
                    # Ended while this front end joined (the last one left it): start it anew,
                    # but a replica that cannot load its model fails every start.
                    restarts[i] += 1
                    if restarts[i] > 2:
                        raise TensorSharpError(f"replica {i} of {spec.name} did not start: {e}") from None
                    actors[i] = join(i)
                except ray.exceptions.RayError as e:
                    raise TensorSharpError(f"the replicas of {spec.name} did not start: {e}") from None
            if None in reports:   # some are ending: join again once they are gone
                if time.monotonic() > deadline:
                    raise TensorSharpError(f"the replicas of {spec.name} did not start within {load_timeout:g} s")
                time.sleep(0.2)
        engine = cls(actors, spec.name, n_ctx, n_vocab, load_kw.get("parallel", 1), load_kw.get("max_queue", 16))
        engine.front = front
        engine._reports = reports
        engine._polling.acquire()
        engine._spawn(engine._monitor, ())
        others = {f for r in reports for f in r["fronts"]} - {front}
        log.info("%s: %d replicas on the Ray cluster%s", spec.name, replicas,
                 f", shared with {len(others)} other front ends" if others else "")
        return engine

    # -- the Scheduler's surface ---------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def start(self) -> "RayEngine":
        """Nothing to start: the replicas run from launch() on (ServedModel.load calls this)."""
        return self

    def submit(self, request: GenerationRequest, sink) -> RemoteHandle:
        """Routes the request; its events reach sink on a pump thread. EngineUnavailableError when
        no replica is up; ValueError for options the vocabulary cannot take."""
        request.sampling.validate(self.n_vocab)
        check_pooling(request.pooling)
        if self._closing:
            raise TensorSharpError("the scheduler is shut down")
        i = self.router.pick(request.prompt, request.session)
        if i is None:
            raise EngineUnavailableError(f"no replica of {self.name} is up; retry shortly")
        # Named after this front end, so that a replica it leaves can end what it left running there.
        handle = RemoteHandle(request, self, f"{self.front}/{uuid.uuid4().hex}")
        group = f"{handle.rid}:{id(request.group)}" if request.group is not None else None
        self._spawn(self._pump, (handle, Wire.of(handle.rid, request, group), i, sink))
        return handle

    def status(self) -> dict:
        total = {"pending": 0, "active": 0, "parallel": 0, "capacity": 0, "processed": 0}
        for i, r in self._up_reports():
            for k in total:
                total[k] += r[k]
        return total

    @property
    def slots(self) -> list[SlotView]:
        return [SlotView(busy, held) for _, r in self._up_reports() for busy, held in r["slots"]]

    @property
    def cache(self) -> KVView:
        return KVView(self._n_ctx, np.array([r["cached_tokens"] for _, r in self._up_reports()], dtype=np.int64))

    def stalled(self, after: float) -> str | None:
        """None while at least one replica serves; else why none does."""
        if self._closing:
            return None
        reasons = []
        for i in range(len(self.actors)):
            r = self._reports[i]
            if not self.router.alive[i] or r is None:
                reasons.append(f"replica {i} is down")
            elif r["stalled"]:
                reasons.append(f"replica {i}: {r['stalled']}")
            else:
                return None
        return "; ".join(reasons)

    def close(self, timeout: float = 10.0) -> None:
        """Stops polling and leaves the replicas, ending those no other front end uses (Ray does
        not restart them)."""
        if self._closing:
            return
        self._closing = True
        # Polling stops first: a Ray call after the caller's ray.shutdown() kills the process.
        if self._polling.acquire(timeout=timeout):
            self._polling.release()
        ray = ray_module()
        try:
            refs = [a.leave.remote(self.front) for a in self.actors]
            last = ray.get(refs, timeout=timeout)
        except Exception:   # the cluster or a replica is gone: a replica left alone ends itself
            return
        for a, end in zip(self.actors, last):
            if end:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:   # it ended itself meanwhile
                    pass

    # -- threads -----------------------------------------------------------------------------------------
    def _up_reports(self):
        return [(i, r) for i, r in enumerate(self._reports) if r is not None and self.router.alive[i]]

    def _pump(self, handle: RemoteHandle, wire: Wire, i: int, sink) -> None:
        """Streams the request's events from replica i into sink. A replica lost before the request
        started (or a full queue there) moves it to another; lost after, it ends with Failed."""
        ray = ray_module()
        tried, progress = set(), _Progress()
        while True:
            handle.replica = i
            if handle.cancelled:   # cancelled before the replica knew it: tell it now
                self.actors[i].cancel.remote(handle.rid)
            try:
                full = self._stream(handle, wire, i, sink, progress)
            except Exception as e:
                self.router.ended(i)
                if not isinstance(e, (ray.exceptions.RayActorError, ray.exceptions.RaySystemError,
                                      ray.exceptions.ObjectLostError)):
                    # The replica raised: this request fails and the replica serves on.
                    self._send(handle, sink, Failed(TensorSharpError(f"replica {i} of {self.name} failed: {e}")))
                    return
                self._lost(i, e)
                if progress.started or handle.cancelled:
                    self._send(handle, sink, Failed(EngineUnavailableError(
                        f"replica {i} of {self.name} was lost while serving this request ({type(e).__name__}); "
                        f"retry it")))
                    return
                error = EngineUnavailableError(f"no replica of {self.name} could take this request; retry shortly")
            else:
                if full is None:
                    return
                error = full
            tried.add(i)
            i = self.router.pick(wire.request.prompt, wire.request.session, exclude=frozenset(tried))
            if i is None:
                self._send(handle, sink, Failed(error))
                return

    def _stream(self, handle: RemoteHandle, wire: Wire, i: int, sink, progress: "_Progress") -> QueueFullError | None:
        """Feeds replica i's events for the request into sink until it ends (None), or gives back
        the replica's QueueFullError for a request not started anywhere. Ray's errors propagate."""
        ray = ray_module()
        for ref in self.actors[i].generate.remote(wire):
            for event in ray.get(ref):
                if isinstance(event, Failed) and isinstance(event.error, QueueFullError) and not progress.started:
                    self.router.ended(i)
                    return event.error
                if isinstance(event, Started):
                    progress.started = True
                elif isinstance(event, Token):
                    progress.reply.append(event.id)
                if isinstance(event, (Done, Failed)):
                    # What the replica's cache now holds for it, which a follow-up turn starts with.
                    self.router.ended(i, wire.request.prompt + progress.reply if isinstance(event, Done) else None)
                    self._send(handle, sink, event)
                    return None
                if not self._send(handle, sink, event):
                    self.router.ended(i)
                    return None
        raise RuntimeError("the replica ended the stream without its Done")

    @staticmethod
    def _send(handle: RemoteHandle, sink, event) -> bool:
        try:
            sink(event)
            return True
        except Exception:   # a broken consumer: end its request, as the engine thread does
            log.exception("request sink failed; cancelling the request")
            handle.cancel()
            return False

    def _lost(self, i: int, error: Exception) -> None:
        """A stream from i broke: nothing more goes there until the monitor hears a new incarnation."""
        r = self._reports[i]
        self._dead_pid[i] = r["pid"] if r is not None else None
        if self.router.alive[i]:
            log.warning("%s: replica %d lost (%s); routing around it until Ray restarts it", self.name, i, error)
        self.router.down(i)

    def _monitor(self) -> None:
        try:
            self._poll()
        finally:
            self._polling.release()

    def _poll(self) -> None:
        ray = ray_module()
        while not self._closing:
            refs = []
            for a in self.actors:
                try:
                    refs.append(a.report.remote(self.front))
                except Exception:   # the cluster is unreachable
                    refs.append(None)
            pending = [r for r in refs if r is not None]
            ready, _ = ray.wait(pending, num_returns=len(pending), timeout=max(2.0, 4 * self.poll_seconds)) \
                if pending else ([], [])
            ready = set(ready)
            for i, ref in enumerate(refs):
                if self._closing:
                    return
                try:
                    report = ray.get(ref) if ref in ready else None
                except Exception:
                    report = None
                if report is None or report["ending"]:   # dead, restarting, unreachable or being ended
                    if self.router.alive[i]:
                        log.warning("%s: replica %d does not answer; routing around it", self.name, i)
                    self.router.down(i)
                    continue
                if report["pid"] == self._dead_pid[i]:   # an answer its death overtook
                    continue
                fresh = self._reports[i] is not None and report["pid"] != self._reports[i]["pid"]
                self._reports[i] = report
                self.router.reported(i, report["pending"] + report["active"], report["held"])
                if not self.router.alive[i]:
                    log.info("%s: replica %d is back%s", self.name, i, " (restarted)" if fresh else "")
                self.router.up(i, fresh)
            self._sleep(self.poll_seconds)
