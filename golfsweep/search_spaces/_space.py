"""The search space of a sweep file: ``[space.NAME]`` tables in, typed ``ParamSpec`` dimensions out.

Each problem names the key, the rule and the value; see :mod:`golfsweep.search_spaces._spec`,
which reads the rest of the file and owns the ``SweepSpec``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from golfsweep.search_spaces._validate import Validator, brief, is_int

#: Variables golfsweep sets for every run itself; a search parameter may not map onto them.
RESERVED_ENV = frozenset(
    {"SEED", "RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ParamType(str, Enum):
    FLOAT = "float"
    INT = "int"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class ParamSpec:
    """One search dimension; ``env`` is the variable the value is passed in."""

    name: str
    type: ParamType
    env: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    builtin: str | None = None

    def grid_values(self) -> list[Any]:
        """The values a grid sampler walks: choices, every int/step value, or 5 points for floats."""
        if self.type is ParamType.CATEGORICAL:
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.type is ParamType.INT:
            step = int(self.step or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.step:
            n = int(math.floor((self.high - self.low) / self.step + 1e-9))
            return [round(self.low + i * self.step, 12) for i in range(n + 1)]
        if self.log:
            a, b = math.log(self.low), math.log(self.high)
            points = [math.exp(a + (b - a) * i / 4) for i in range(5)]
        else:
            points = [self.low + (self.high - self.low) * i / 4 for i in range(5)]
        return [min(max(float(f"{x:.6g}"), self.low), self.high) for x in points]


#: The three knobs the challenge sweeps most, usable by name: ``[space.ttt_lr]`` with no keys.
BUILTIN_PARAMS: dict[str, dict[str, Any]] = {
    "gptq_damp": {"type": "float", "low": 0.001, "high": 0.1, "log": True, "env": "GPTQ_DAMP"},
    "qk_gain": {"type": "float", "low": 1.0, "high": 6.0, "log": False, "env": "QK_GAIN_INIT"},
    "ttt_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True, "env": "TTT_LR"},
}


PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "env", "builtin"}


def validate_space(v: Validator, space: Mapping[str, Any], env: Mapping[str, str]) -> tuple[ParamSpec, ...]:
    params: list[ParamSpec] = []
    seen_env: dict[str, str] = {}
    for name, raw in space.items():
        key = f"space.{name}"
        if not isinstance(raw, Mapping):
            v.problem(f"{key}: must be a table like {{type = \"float\", low = .., high = ..}}, got {brief(raw)}")
            continue
        v.unknown(f"{key}.", raw, PARAM_KEYS)
        builtin_name = raw.get("builtin")
        if builtin_name is None and name.lower() in BUILTIN_PARAMS and "type" not in raw:
            builtin_name = name.lower()
        merged: dict[str, Any] = {}
        if builtin_name is not None:
            if builtin_name not in BUILTIN_PARAMS:
                v.problem(f"{key}.builtin: must be one of {', '.join(BUILTIN_PARAMS)}, got {builtin_name!r}")
                continue
            merged.update(BUILTIN_PARAMS[builtin_name])
        merged.update({k: val for k, val in raw.items() if k != "builtin"})
        if "type" not in merged:
            v.problem(f"{key}.type: is required (float, int or categorical) unless the parameter is a "
                      f"builtin ({', '.join(BUILTIN_PARAMS)}), got nothing")
            continue
        try:
            ptype = ParamType(merged["type"])
        except ValueError:
            v.problem(f"{key}.type: must be one of float, int, categorical, got {merged['type']!r}")
            continue
        env_name = merged.get("env", name)
        if not isinstance(env_name, str) or not ENV_NAME.match(env_name):
            v.problem(f"{key}.env: must be a valid environment variable name, got {env_name!r}")
            continue
        if env_name in RESERVED_ENV:
            v.problem(f"{key}.env: may not map onto {env_name}, which golfsweep sets for every run, "
                      f"got {env_name!r}")
            continue
        if env_name in env:
            v.problem(f"{key}.env: {env_name} is also fixed in [env]; a variable is either fixed or "
                      f"searched, got {env_name!r}")
        if env_name in seen_env:
            v.problem(f"{key}.env: {env_name} is already set by space.{seen_env[env_name]}, got {env_name!r}")
        seen_env[env_name] = name
        param = _validate_param(v, key, name, ptype, env_name, merged, builtin_name)
        if param is not None:
            params.append(param)
    return tuple(params)


def _validate_param(v: Validator, key: str, name: str, ptype: ParamType, env_name: str,
                    d: Mapping[str, Any], builtin: str | None) -> ParamSpec | None:
    if ptype is ParamType.CATEGORICAL:
        for extra in ("low", "high", "log", "step"):
            if extra in d:
                v.problem(f"{key}.{extra}: not allowed for a categorical parameter, got {d[extra]!r}")
        choices = d.get("choices")
        if not isinstance(choices, list):
            v.problem(f"{key}.choices: must be a list, got {brief(choices)}")
            return None
        if not choices:
            v.problem(f"{key}.choices: must not be empty, got []")
            return None
        bad = [c for c in choices if not isinstance(c, (str, int, float, bool))]
        if bad:
            v.problem(f"{key}.choices: each choice must be a string, number or boolean, got {brief(bad[0])}")
            return None
        if len({json.dumps(c) for c in choices}) != len(choices):
            v.problem(f"{key}.choices: choices must be distinct, got {choices!r}")
            return None
        return ParamSpec(name=name, type=ptype, env=env_name, choices=tuple(choices), builtin=builtin)

    if "choices" in d:
        v.problem(f"{key}.choices: only for categorical parameters, got type {ptype.value!r}")
    ok = True
    bounds = {}
    for b in ("low", "high"):
        val = d.get(b)
        if val is None:
            v.problem(f"{key}.{b}: is required for a {ptype.value} parameter, got nothing")
            ok = False
        elif isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
            v.problem(f"{key}.{b}: must be a finite number, got {val!r}")
            ok = False
        elif ptype is ParamType.INT and not is_int(val):
            v.problem(f"{key}.{b}: must be an integer for an int parameter, got {val!r}")
            ok = False
        bounds[b] = val
    log = d.get("log", False)
    if not isinstance(log, bool):
        v.problem(f"{key}.log: must be true or false, got {log!r}")
        ok = False
    step = d.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
        v.problem(f"{key}.step: must be a positive number, got {step!r}")
        ok = False
    if not ok:
        return None
    low, high = bounds["low"], bounds["high"]
    if not low < high:
        v.problem(f"{key}: `low < high` must hold, got low={low} high={high}")
        return None
    if log and low <= 0:
        v.problem(f"{key}.log: log scale needs low > 0, got low={low}")
        return None
    if log and step is not None:
        v.problem(f"{key}.step: cannot be combined with log = true, got step={step}")
        return None
    return ParamSpec(name=name, type=ptype, env=env_name, low=low, high=high, log=log, step=step,
                     builtin=builtin)
