"""How a sweep spends its GPU-hours: ``[pruning]`` (seed-sequential trials, curve pruning) and
``[cost]`` (price, budget). Validated like the rest of the sweep file; the driver applies them."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from golfsweep.search_spaces._validate import Validator

__all__ = ["CostSpec", "CurvePruner", "PruningSpec", "SeedPolicy", "validate_cost", "validate_pruning"]


class SeedPolicy(str, enum.Enum):
    ALL = "all"  # every seed of a trial at once
    SEQUENTIAL = "sequential"  # one seed at a time, the next only while the trial can still matter


class CurvePruner(str, enum.Enum):
    NONE = "none"
    MEDIAN = "median"
    PERCENTILE = "percentile"
    SUCCESSIVE_HALVING = "successive_halving"
    HYPERBAND = "hyperband"


@dataclass(frozen=True)
class PruningSpec:
    """``seeds``: see :class:`SeedPolicy`. A trial's next seed runs while the mean of its seeds so far
    is within ``seed_margin_z`` standard errors of the best feasible trial's mean (the seed-to-seed
    spread observed so far in the sweep, ``seed_sigma_prior`` until it gives 4 degrees of freedom).
    ``curve``: an Optuna pruner fed the in-training validation curve while the run is alive, never
    before ``warmup_steps``."""

    seeds: SeedPolicy = SeedPolicy.ALL
    curve: CurvePruner = CurvePruner.NONE
    warmup_steps: int = 0
    seed_margin_z: float = 2.33
    seed_sigma_prior: float = 0.002
    percentile: float = 25.0

    @property
    def active(self) -> bool:
        return self.seeds is SeedPolicy.SEQUENTIAL or self.curve is not CurvePruner.NONE


@dataclass(frozen=True)
class CostSpec:
    """GPU-hours are wall time times GPUs held, for every attempt (failed, killed and pruned ones
    too). With ``price_per_gpu_hour`` money is shown; with ``budget_gpu_hours`` no run starts once
    what was spent plus what is in flight reaches it. With ``autoscale_runs`` (a Ray cluster with an
    autoscaler) the driver asks the autoscaler for room for up to that many runs at once while it
    has runs to start, for fewer as the sweep runs out of work, and for none once it ends."""

    price_per_gpu_hour: float | None = None
    budget_gpu_hours: float | None = None
    autoscale_runs: int = 0


PRUNING_KEYS = {"seeds", "curve", "warmup_steps", "seed_margin_z", "seed_sigma_prior", "percentile"}
COST_KEYS = {"price_per_gpu_hour", "budget_gpu_hours", "autoscale_runs"}


def _positive(v: Validator, d: Mapping[str, Any], key: str, default: float | None) -> float | None:
    short = key.rsplit(".", 1)[-1]
    if short not in d:
        return default
    val = d[short]
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not val > 0 or val != val:
        v.problem(f"{key}: must be a positive number, got {val!r}")
        return default
    return float(val)


def validate_pruning(v: Validator, d: Mapping[str, Any]) -> PruningSpec:
    v.unknown("pruning.", d, PRUNING_KEYS)
    seeds = v.enum(d, "pruning.seeds", SeedPolicy, SeedPolicy.ALL)
    curve = v.enum(d, "pruning.curve", CurvePruner, CurvePruner.NONE)
    warmup = v.int_at_least(d, "pruning.warmup_steps", 0, default=0)
    z = _positive(v, d, "pruning.seed_margin_z", 2.33)
    sigma = _positive(v, d, "pruning.seed_sigma_prior", 0.002)
    pct = _positive(v, d, "pruning.percentile", 25.0)
    if pct is not None and pct >= 100:
        v.problem(f"pruning.percentile: must be below 100, got {pct!r}")
    return PruningSpec(seeds=seeds, curve=curve, warmup_steps=warmup, seed_margin_z=z, seed_sigma_prior=sigma,
                       percentile=pct)


def validate_cost(v: Validator, d: Mapping[str, Any]) -> CostSpec:
    v.unknown("cost.", d, COST_KEYS)
    return CostSpec(price_per_gpu_hour=_positive(v, d, "cost.price_per_gpu_hour", None),
                    budget_gpu_hours=_positive(v, d, "cost.budget_gpu_hours", None),
                    autoscale_runs=v.int_at_least(d, "cost.autoscale_runs", 0, default=0))
