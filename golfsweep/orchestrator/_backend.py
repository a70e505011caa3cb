"""Where runs execute. The driver only talks to ``RunBackend``; Ray is one implementation."""

from __future__ import annotations

import abc
import concurrent.futures as cf
import queue
import socket
import time
from pathlib import Path

from golfsweep.errors import GolfsweepError
from golfsweep.orchestrator._task import run_task
from golfsweep.worker import CurvePoint, RunResult, RunSpec, RunState, execute_run, kill_live_runs


class RunBackend(abc.ABC):
    """Executes runs and reports their results.

    Contract: the driver calls ``capacity()`` to learn how many runs may be in flight, ``submit()``
    at most that many times, then ``poll()`` until results come back. Every submitted spec comes
    back from ``poll`` exactly once, as a ``RunResult`` — never an exception. A run whose worker or
    node died comes back with state ``LOST``; retrying it is the driver's decision, not the backend's.
    While runs are alive, ``points()`` hands over the validation points they have printed since the
    last call; ``cancel()`` stops a run (its process tree killed), which then comes back from
    ``poll`` as ``PRUNED``. ``now()`` is the backend's clock, in seconds (a simulation's is virtual).
    """

    #: Whether what ``submit`` is given is kept where others can read it: a Ray cluster reached by
    #: address holds task arguments (a spec's env included) in its object store and GCS.
    shares_specs: bool = False

    @abc.abstractmethod
    def capacity(self) -> int:
        """How many runs can execute at once right now (nodes come and go). Called every loop of the
        driver: keep it cheap (a cached count, refreshed on node events)."""

    @abc.abstractmethod
    def submit(self, spec: RunSpec) -> None:
        """Start ``spec`` (or queue it where the backend has its own queue)."""

    @abc.abstractmethod
    def poll(self, timeout: float) -> list[tuple[RunSpec, RunResult]]:
        """Wait up to ``timeout`` seconds; return the runs that finished since the last call."""

    @abc.abstractmethod
    def in_flight(self) -> int:
        """Runs submitted and not yet returned by ``poll``."""

    def points(self) -> list[tuple[RunSpec, CurvePoint]]:
        """In-training validation points printed by runs still in flight, since the last call."""
        return []

    def describe_capacity(self) -> str:
        """What ``capacity()`` is made of, in a few words, for a user waiting on it."""
        return f"room for {self.capacity()} runs at once"

    def request_room(self, runs: int) -> None:
        """Ask the cluster to grow to room for ``runs`` runs at once (0 withdraws the ask): a hint for
        clusters with an autoscaler. A backend with a fixed size has nothing to ask."""

    def cancel(self, spec: RunSpec, reason: str) -> None:
        """Stop the run of ``spec`` if still in flight; it comes back from ``poll`` as ``PRUNED``."""
        raise NotImplementedError(f"{type(self).__name__} cannot stop a run")

    def now(self) -> float:
        return time.time()

    def shutdown(self) -> None:
        """Release resources. Runs still in flight are killed with their process trees (the driver
        calls this when it stops early); their results are not reported."""


class InProcessBackend(RunBackend):
    """Runs on this machine in threads, without Ray: for tests and single-box use."""

    def __init__(self, max_parallel: int = 1, workdir_root: Path | None = None) -> None:
        self._pool = cf.ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="golfsweep-run")
        self._max = max_parallel
        self._root = workdir_root
        self._futures: dict[cf.Future, RunSpec] = {}
        self._points: queue.SimpleQueue = queue.SimpleQueue()
        self._stops: dict[tuple[int, int, int], str] = {}

    def capacity(self) -> int:
        return self._max

    def submit(self, spec: RunSpec) -> None:
        key = (spec.trial, spec.seed, spec.attempt)
        fut = self._pool.submit(execute_run, spec, workdir_root=self._root, node_id="local",
                                on_point=lambda p: self._points.put((spec, p)), stop=lambda: self._stops.get(key))
        self._futures[fut] = spec

    def points(self) -> list[tuple[RunSpec, CurvePoint]]:
        out = []
        while True:
            try:
                out.append(self._points.get_nowait())
            except queue.Empty:
                return out

    def cancel(self, spec: RunSpec, reason: str) -> None:
        self._stops[(spec.trial, spec.seed, spec.attempt)] = reason

    def poll(self, timeout: float) -> list[tuple[RunSpec, RunResult]]:
        if not self._futures:
            time.sleep(min(timeout, 0.05))
            return []
        done, _ = cf.wait(list(self._futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        for fut in done:
            spec = self._futures.pop(fut)
            try:
                out.append((spec, fut.result()))
            except Exception as exc:  # a worker bug must not take the sweep down with it
                out.append((spec, lost(spec, f"worker error: {type(exc).__name__}: {exc}")))
        return out

    def in_flight(self) -> int:
        return len(self._futures)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._futures:
            kill_live_runs()  # this process's runs: the threads return once their trees are gone


def lost(spec: RunSpec, reason: str, node_id: str | None = None) -> RunResult:
    now = time.time()
    return RunResult(trial=spec.trial, seed=spec.seed, attempt=spec.attempt, state=RunState.LOST,
                     reason=reason, node_id=node_id, started_at=now, ended_at=now)


class RayBackend(RunBackend):
    """Each run is a Ray task reserving ``gpus_per_run`` GPUs (or ``cpus_per_run`` CPUs) on ONE node.

    A single task's resources always come from one node, so ``gpus_per_run = 8`` on 8-GPU nodes
    means one run per node. Ray's own task retries are off: node loss comes back as ``LOST`` and
    the driver re-queues it, so attempts are counted and recorded in one place.
    """

    #: Seconds between recounts of the cluster's nodes when no node event forced one.
    CAPACITY_REFRESH_S = 10.0
    #: Seconds between reads of the curve-point queue (two actor calls): a pruner deciding a second
    #: later costs nothing against 20-minute runs; reading it on every loop cost each run ~5 ms.
    POINTS_EVERY_S = 1.0

    def __init__(self, *, gpus_per_run: int, cpus_per_run: int, address: str | None = None,
                 num_cpus: int | None = None, num_gpus: int | None = None, workdir_root: Path | None = None,
                 runtime_env: dict | None = None, execute=None) -> None:
        """``execute(spec, workdir_root, points)`` is what a run's Ray task runs (default: the worker's
        ``execute_run``); the dispatch benchmark swaps in a sleep."""
        import ray

        self._ray = ray
        self._gpus = gpus_per_run
        self._cpus = cpus_per_run
        self._refs: dict[object, RunSpec] = {}
        self._owns_ray = not ray.is_initialized()
        self.shares_specs = bool(address)
        if self._owns_ray:
            if address:
                _probe(address)
            try:
                if address:
                    ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                             runtime_env=runtime_env)
                else:
                    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, logging_level="ERROR",
                             log_to_driver=False, include_dashboard=False, runtime_env=runtime_env)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... for a bad address
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise GolfsweepError(f"--address: cannot connect to a Ray cluster at {address!r}: {first}") from None
        self._task = ray.remote(execute or run_task).options(
            num_gpus=gpus_per_run, num_cpus=0 if gpus_per_run else cpus_per_run, max_retries=0,
            scheduling_strategy="SPREAD")
        self._root = workdir_root
        from ray.util.queue import Queue

        # Curve points from the runs. Made now, so its actor's process does not start alongside the
        # first runs' workers.
        self._queue = Queue(actor_options={"num_cpus": 0})
        self._cancelled: dict[object, str] = {}
        self._submitted: dict[object, float] = {}
        self._capacity: int | None = None
        self._capacity_at = 0.0
        self._points_at = 0.0

    def capacity(self) -> int:
        """Runs that fit on the live nodes: counted at start, after a node event (a run came back
        LOST: its node died) and every ``CAPACITY_REFRESH_S`` seconds (nodes that joined)."""
        now = time.monotonic()
        if self._capacity is None or now - self._capacity_at > self.CAPACITY_REFRESH_S:
            self._capacity, self._capacity_at = self._count_capacity(), now
        return self._capacity

    def _count_capacity(self) -> int:
        total = 0
        for node in self._ray.nodes():
            if not node.get("Alive"):
                continue
            res = node.get("Resources", {})
            if self._gpus:
                total += int(res.get("GPU", 0) // self._gpus)
            else:
                total += int(res.get("CPU", 0) // self._cpus)
        return total

    def describe_capacity(self) -> str:
        alive = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        unit, need = ("GPU", self._gpus) if self._gpus else ("CPU", self._cpus)
        most = max((int(r.get(unit, 0)) for r in alive), default=0)
        return (f"a run needs {need} {unit}s on one node; {len(alive)} live node(s), "
                f"the largest with {most} {unit}s")

    def request_room(self, runs: int) -> None:
        # A standing request: the autoscaler keeps room for these shapes (running runs included) until
        # the next call replaces it; a cluster without an autoscaler ignores it.
        from ray.autoscaler.sdk import request_resources

        shape = {"GPU": self._gpus} if self._gpus else {"CPU": self._cpus}
        request_resources(bundles=[dict(shape) for _ in range(runs)])

    def submit(self, spec: RunSpec) -> None:
        ref = self._task.remote(spec, str(self._root) if self._root else None, self._queue)
        self._refs[ref] = spec
        self._submitted[ref] = time.time()

    def points(self) -> list[tuple[RunSpec, CurvePoint]]:
        now = time.monotonic()
        if self._queue is None or now - self._points_at < self.POINTS_EVERY_S:
            return []
        self._points_at = now
        try:
            items = self._queue.get_nowait_batch(self._queue.qsize())
        except Exception:  # the queue actor is gone with the cluster: nothing to report
            return []
        live = {(s.trial, s.seed, s.attempt): s for s in self._refs.values()}
        return [(live[key], point) for key, point in items if key in live]

    def cancel(self, spec: RunSpec, reason: str) -> None:
        for ref, s in self._refs.items():
            if s is spec or (s.trial, s.seed, s.attempt) == (spec.trial, spec.seed, spec.attempt):
                self._cancelled[ref] = reason
                self._ray.cancel(ref, force=True)  # the worker dies; its trainer tree dies with it

    def poll(self, timeout: float) -> list[tuple[RunSpec, RunResult]]:
        if not self._refs:
            time.sleep(min(timeout, 0.05))
            return []
        # Back as soon as one run ends (not after a fixed poll), with every other one already done.
        refs = list(self._refs)
        ready, rest = self._ray.wait(refs, num_returns=1, timeout=timeout, fetch_local=False)
        if ready and rest:
            more, _ = self._ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=False)
            ready += more
        out = []
        for ref in ready:
            spec = self._refs.pop(ref)
            submitted = self._submitted.pop(ref, time.time())
            if ref in self._cancelled:
                reason = self._cancelled.pop(ref)
                out.append((spec, RunResult(trial=spec.trial, seed=spec.seed, attempt=spec.attempt,
                                            state=RunState.PRUNED, reason=reason, started_at=submitted,
                                            ended_at=time.time())))
                continue
            try:
                out.append((spec, self._ray.get(ref)))
            except self._ray.exceptions.RayTaskError as exc:  # golfsweep's own code raised on the node
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                out.append((spec, lost(spec, f"worker error: {type(cause).__name__}: {_first_line(cause)}")))
            except self._ray.exceptions.RayError as exc:  # node died, worker crashed, object lost
                out.append((spec, lost(spec, f"system failure: {type(exc).__name__}: {_first_line(exc)}")))
                self._capacity = None  # a node event: count the nodes again
        return out

    def in_flight(self) -> int:
        return len(self._refs)

    def shutdown(self) -> None:
        for ref in list(self._refs):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:
                pass
        self._refs.clear()
        if self._queue is not None:
            try:
                self._queue.shutdown(force=True)
            except Exception:
                pass
            self._queue = None
        if self._owns_ray:
            self._ray.shutdown()


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an address nobody answers: Ray itself retries a dead GCS for minutes."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise GolfsweepError(f"--address: must be HOST:PORT (or ray://HOST:PORT, or auto), got {address!r}")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise GolfsweepError(f"--address: no Ray cluster answers at {address!r} "
                             f"({exc.strerror or type(exc).__name__} within {timeout:g}s)") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""
