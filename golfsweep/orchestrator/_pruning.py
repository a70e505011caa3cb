"""The driver's pruning decisions, as plain functions: whether a seed-sequential trial's first seed
earns it the other seeds, and the Optuna pruner that judges validation curves.

**Seed-sequential rule.** A trial runs its seeds one at a time. After ``k`` completed seeds with mean
``x``, let ``best`` be the mean of the best other trial over its ``n`` completed seeds (a trial not
pruned or failed, whose completed runs all pass the limits: the incumbent, however many seeds it has
so far) and ``sigma`` the
seed-to-seed standard deviation (pooled within trials over the sweep's completed trials with two or
more seeds; ``seed_sigma_prior`` until they give 4 degrees of freedom). The trial runs its next seed
when ``x - best < z * sigma * sqrt(1/k + 1/n)`` (minimizing; mirrored for maximizing), else it is
pruned. Without an incumbent yet, the next seed runs. **False-drop risk:** at each
check, a trial whose true mean equals the best's is dropped with probability ``P(Z > z)`` — 1 % for
the default ``z = 2.33`` — if ``sigma`` is right, so at most about 2 % over a 3-seed trial's two
checks; a truly better trial less often; an underestimated ``sigma`` (the prior, early on) raises it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import optuna

from golfsweep.search_spaces import CurvePruner, PruningSpec

__all__ = ["make_pruner", "pooled_seed_sigma", "worth_more_seeds"]

MIN_DOF = 4


def pooled_seed_sigma(groups: Iterable[Sequence[float]], prior: float) -> tuple[float, int]:
    """Pooled within-trial standard deviation and its degrees of freedom; the prior (dof 0) until
    the groups give :data:`MIN_DOF` degrees of freedom."""
    ss, dof = 0.0, 0
    for g in groups:
        if len(g) >= 2:
            m = sum(g) / len(g)
            ss += sum((x - m) ** 2 for x in g)
            dof += len(g) - 1
    if dof < MIN_DOF or ss <= 0:
        return prior, 0
    return math.sqrt(ss / dof), dof


def worth_more_seeds(mean: float, k: int, best_mean: float | None, best_n: int, sigma: float, z: float,
                     minimize: bool = True) -> tuple[bool, str]:
    """Whether a trial whose ``k`` completed seeds average ``mean`` can still beat the best; and why."""
    if best_mean is None:
        return True, "no feasible trial yet"
    gap = (mean - best_mean) if minimize else (best_mean - mean)
    margin = z * sigma * math.sqrt(1 / max(k, 1) + 1 / max(best_n, 1))
    verdict = gap < margin
    return verdict, (f"{k}-seed mean {mean:.5f} is {gap:+.5f} from the best mean {best_mean:.5f}; margin "
                     f"{margin:.5f} (z {z:g} x sigma {sigma:.5f})")


def make_pruner(p: PruningSpec) -> optuna.pruners.BasePruner:
    """The Optuna pruner of ``[pruning] curve`` (a no-op one for ``none``), never before ``warmup_steps``."""
    warm = p.warmup_steps
    if p.curve is CurvePruner.MEDIAN:
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warm)
    if p.curve is CurvePruner.PERCENTILE:
        return optuna.pruners.PercentilePruner(p.percentile, n_startup_trials=3, n_warmup_steps=warm)
    if p.curve is CurvePruner.SUCCESSIVE_HALVING:
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(warm, 1))
    if p.curve is CurvePruner.HYPERBAND:
        return optuna.pruners.HyperbandPruner(min_resource=max(warm, 1))
    return optuna.pruners.NopPruner()
