"""A ``RunBackend`` whose runs are simulated on a virtual clock: no process starts, nothing sleeps.

The real driver (ask/tell, retries, seed-sequential verdicts, curve pruning, the ledger and the
budget) runs unchanged on top of it, so what-if questions — how many GPU-hours does this pruning
policy spend on this landscape? — are answered by the decisions golfsweep really makes, in seconds.
``benchmarks/search_efficiency.py`` and the budget tests use it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from golfsweep.orchestrator._backend import RunBackend
from golfsweep.worker import ArtifactMeasurement, CurvePoint, RunResult, RunSpec, RunState

__all__ = ["SimulatedBackend", "SimulatedRun"]


@dataclass(frozen=True)
class SimulatedRun:
    """What one run would do: last ``duration_s`` seconds, print ``curve`` points at their offsets
    (seconds after its start), and end ``state`` with its final metric."""

    duration_s: float
    val_bpb: float | None
    val_loss: float | None = None
    curve: Sequence[tuple[float, CurvePoint]] = ()
    state: RunState = RunState.COMPLETE
    reason: str | None = None
    train_time_ms: int | None = None
    eval_time_ms: int | None = None
    bytes_total: int | None = None


@dataclass(order=True)
class _Event:
    time: float
    order: int
    kind: str = field(compare=False)  # "point" | "end"
    key: tuple[int, int, int] = field(compare=False)
    point: CurvePoint | None = field(compare=False, default=None)


class SimulatedBackend(RunBackend):
    """``nodes`` runs at a time; ``simulate(spec)`` decides what each run does."""

    def __init__(self, simulate: Callable[[RunSpec], SimulatedRun], nodes: int = 1, start: float = 1_000_000.0) -> None:
        self._simulate = simulate
        self._nodes = nodes
        self._now = start
        self._events: list[_Event] = []
        self._order = itertools.count()
        self._runs: dict[tuple[int, int, int], tuple[RunSpec, SimulatedRun, float]] = {}
        self._cancelled: dict[tuple[int, int, int], str] = {}
        self._points: list[tuple[RunSpec, CurvePoint]] = []

    def now(self) -> float:
        return self._now

    def capacity(self) -> int:
        return self._nodes

    def in_flight(self) -> int:
        return len(self._runs)

    def submit(self, spec: RunSpec) -> None:
        key = (spec.trial, spec.seed, spec.attempt)
        sim = self._simulate(spec)
        self._runs[key] = (spec, sim, self._now)
        for offset, point in sim.curve:
            if offset < sim.duration_s:
                heapq.heappush(self._events, _Event(self._now + offset, next(self._order), "point", key, point))
        heapq.heappush(self._events, _Event(self._now + sim.duration_s, next(self._order), "end", key))

    def points(self) -> list[tuple[RunSpec, CurvePoint]]:
        out, self._points = self._points, []
        return out

    def cancel(self, spec: RunSpec, reason: str) -> None:
        key = (spec.trial, spec.seed, spec.attempt)
        if key in self._runs:
            self._cancelled[key] = reason

    def poll(self, timeout: float) -> list[tuple[RunSpec, RunResult]]:
        """Advance the clock to the next thing that happens: a cancelled run ends now; else the next
        curve point (returned by ``points()``) or run end."""
        done = [self._end(key, self._cancelled.pop(key)) for key in list(self._cancelled) if key in self._runs]
        if done or not self._events:
            return done
        ev = heapq.heappop(self._events)
        while ev.key not in self._runs:  # events of a run that was cancelled already
            if not self._events:
                return []
            ev = heapq.heappop(self._events)
        self._now = max(self._now, ev.time)
        if ev.kind == "point":
            self._points.append((self._runs[ev.key][0], ev.point))
            return []
        return [self._end(ev.key, None)]

    def _end(self, key: tuple[int, int, int], pruned_reason: str | None) -> tuple[RunSpec, RunResult]:
        spec, sim, started = self._runs.pop(key)
        curve = tuple((p.step, p.val_loss, p.val_bpb) for offset, p in sim.curve if started + offset <= self._now)
        if pruned_reason is not None:
            return spec, RunResult(trial=spec.trial, seed=spec.seed, attempt=spec.attempt, state=RunState.PRUNED,
                                   reason=pruned_reason, node_id="sim", started_at=started, ended_at=self._now,
                                   curve=curve)
        art = None if sim.bytes_total is None else ArtifactMeasurement(("sim.ptz",), sim.bytes_total, 0,
                                                                         sim.bytes_total, sim.bytes_total,
                                                                         spec.limits.artifact_bytes)
        return spec, RunResult(trial=spec.trial, seed=spec.seed, attempt=spec.attempt, state=sim.state,
                               reason=sim.reason, node_id="sim", started_at=started, ended_at=self._now,
                               metric_label="simulated", val_bpb=sim.val_bpb, val_loss=sim.val_loss,
                               train_time_ms=sim.train_time_ms, eval_time_ms=sim.eval_time_ms, artifact=art,
                               curve=curve)

    def shutdown(self) -> None:
        self._runs.clear()
        self._events.clear()
