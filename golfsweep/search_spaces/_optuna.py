"""Map a ``SweepSpec`` onto Optuna: distributions, samplers, and config → environment."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from golfsweep.search_spaces._space import ParamSpec, ParamType
from golfsweep.search_spaces._spec import SamplerName, SweepSpec

def distribution(p: ParamSpec) -> BaseDistribution:
    if p.type is ParamType.CATEGORICAL:
        return CategoricalDistribution(list(p.choices))
    if p.type is ParamType.INT:
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return FloatDistribution(float(p.low), float(p.high), log=p.log, step=p.step)


def distributions(spec: SweepSpec) -> dict[str, BaseDistribution]:
    return {p.name: distribution(p) for p in spec.space}


def make_sampler(spec: SweepSpec) -> BaseSampler:
    """The sampler named in the sweep file, re-seeded per trial so a resumed driver proposes
    exactly what an uninterrupted one would have (given the same finished trials)."""

    def factory(seed: int) -> BaseSampler:
        s = spec.sampler
        if s.name is SamplerName.RANDOM:
            return optuna.samplers.RandomSampler(seed=seed)
        if s.name is SamplerName.TPE:
            # multivariate: the knobs interact (damp x qk); constant liar: runs in flight on other nodes
            # count as pending, so parallel asks do not crowd one region
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials, multivariate=True,
                                                  constant_liar=True)
        if s.name is SamplerName.GP:
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=s.n_startup_trials)
        if s.name is SamplerName.CMAES:
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=s.n_startup_trials)
        raise AssertionError(s.name)

    if spec.sampler.name is SamplerName.GRID:
        return GridOrderSampler({p.name: p.grid_values() for p in spec.space})
    return TrialSeededSampler(factory, spec.sampler.seed)


class GridOrderSampler(BaseSampler):
    """Trial ``n`` gets the ``n``-th point of the grid (row-major), wrapping around past the end.

    Unlike Optuna's GridSampler it needs no ``study.stop()`` (which only works inside
    ``study.optimize``) and a restarted driver proposes the same point for the same trial.
    """

    def __init__(self, grid: Mapping[str, Sequence[Any]]) -> None:
        self._names = list(grid)
        self._points = list(itertools.product(*(grid[n] for n in self._names)))

    def __len__(self) -> int:
        return len(self._points)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        point = self._points[trial.number % len(self._points)]
        return point[self._names.index(param_name)]


class TrialSeededSampler(BaseSampler):
    """Delegates to a sampler whose seed is ``base_seed + trial.number``.

    Optuna samplers keep their random state in the process, so a driver restarted after a crash
    would otherwise draw different configs. Everything else (the model TPE/GP fit) is read from
    the study's storage and so survives restarts on its own.
    """

    def __init__(self, factory: Callable[[int], BaseSampler], base_seed: int) -> None:
        self._factory = factory
        self._base_seed = base_seed
        self._cache: dict[int, BaseSampler] = {}

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        n = trial.number
        if n not in self._cache:
            self._cache.clear()  # only the trial being asked needs its sampler
            self._cache[n] = self._factory(self._base_seed * 1_000_003 + n)
        return self._cache[n]

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._for(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:  # the seed is a function of the trial number by design
        pass
