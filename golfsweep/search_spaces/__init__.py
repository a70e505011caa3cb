"""Sweep files → typed ``SweepSpec`` → Optuna distributions and samplers. No Ray, no torch."""

from golfsweep.search_spaces._optuna import (
    GridOrderSampler,
    TrialSeededSampler,
    distribution,
    distributions,
    make_sampler,
)
from golfsweep.search_spaces._policy import CostSpec, CurvePruner, PruningSpec, SeedPolicy
from golfsweep.search_spaces._space import BUILTIN_PARAMS, RESERVED_ENV, ParamSpec, ParamType
from golfsweep.search_spaces._spec import (
    SECRET_MASK,
    Direction,
    Launcher,
    Limits,
    SamplerName,
    SamplerSpec,
    SweepSpec,
    describe_spec,
    is_secret_name,
    load_spec,
    mask_env,
    read_env_table,
    spec_from_dict,
)

__all__ = [
    "BUILTIN_PARAMS", "CostSpec", "CurvePruner", "PruningSpec", "SeedPolicy", "RESERVED_ENV", "SECRET_MASK", "Direction", "Launcher", "Limits", "ParamSpec",
    "ParamType", "SamplerName", "SamplerSpec", "SweepSpec", "GridOrderSampler", "TrialSeededSampler", "describe_spec",
    "distribution", "distributions", "is_secret_name", "load_spec", "make_sampler", "mask_env",
    "read_env_table", "spec_from_dict",
]
