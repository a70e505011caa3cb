"""What a sweep has cost: GPU-hours per attempt, trial and sweep, and money when a price is set.

GPU-hours are an attempt's wall time (started to ended) times the GPUs it held (``gpus_per_run``),
for every attempt that ended: completed, failed, lost, timed out, pruned or killed. An attempt still
running is not in the ledger (the driver adds its time so far when it checks a budget).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CostLedger", "attempt_gpu_hours", "cost_ledger"]


def attempt_gpu_hours(started_at: float | None, ended_at: float | None, gpus: int) -> float:
    if started_at is None or ended_at is None:
        return 0.0
    return max(ended_at - started_at, 0.0) * gpus / 3600.0


@dataclass(frozen=True)
class CostLedger:
    gpus_per_run: int
    per_trial: dict[int, float] = field(default_factory=dict)
    price_per_gpu_hour: float | None = None

    @property
    def total(self) -> float:
        return sum(self.per_trial.values())

    def money(self, gpu_hours: float) -> float | None:
        return None if self.price_per_gpu_hour is None else gpu_hours * self.price_per_gpu_hour


def cost_ledger(attempts: Iterable[Mapping[str, Any]], gpus_per_run: int,
                price_per_gpu_hour: float | None = None) -> CostLedger:
    """The ledger of a sweep's attempts (rows with ``trial``, ``started_at``, ``ended_at``)."""
    per_trial: dict[int, float] = {}
    for a in attempts:
        hours = attempt_gpu_hours(a.get("started_at"), a.get("ended_at"), gpus_per_run)
        per_trial[int(a["trial"])] = per_trial.get(int(a["trial"]), 0.0) + hours
    return CostLedger(gpus_per_run, per_trial, price_per_gpu_hour)
