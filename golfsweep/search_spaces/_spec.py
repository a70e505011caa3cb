"""Sweep files: TOML in, a typed, validated, closed ``SweepSpec`` out.

Validation collects every problem and raises once; each problem names the key, the rule
and the value (``space.TTT_LR: `low < high` must hold, got low=0.01 high=0.001``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from golfsweep.errors import SpecError
from golfsweep.search_spaces._policy import CostSpec, PruningSpec, validate_cost, validate_pruning
from golfsweep.search_spaces._validate import Validator, brief, is_int
from golfsweep.limits import Limits
# The secret-name rule lives with the redactor (golfsweep.redact); re-exported here for the spec's users.
from golfsweep.redact import SECRET_MASK, is_secret_name, mask_env
from golfsweep.scriptfiles import support_name_problem
from golfsweep.storage import masked_url, url_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Variables golfsweep sets for every run itself; a search parameter may not map onto them.
RESERVED_ENV = frozenset(
    {"SEED", "RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SWEEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ParamType(str, Enum):
    FLOAT = "float"
    INT = "int"
    CATEGORICAL = "categorical"


class SamplerName(str, Enum):
    TPE = "tpe"
    RANDOM = "random"
    GP = "gp"
    CMAES = "cmaes"
    GRID = "grid"


class Direction(str, Enum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


class Launcher(str, Enum):
    AUTO = "auto"  # torchrun when more than one process is asked for, else plain python
    TORCHRUN = "torchrun"
    PYTHON = "python"


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


@dataclass(frozen=True)
class SamplerSpec:
    name: SamplerName = SamplerName.TPE
    seed: int = 0
    n_startup_trials: int = 10


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file. ``script`` is absolute; ``env`` holds the fixed environment."""

    name: str
    script: Path
    seeds: tuple[int, ...]
    trials: int
    gpus_per_run: int = 8
    cpus_per_run: int = 1
    nproc: int = 8
    launcher: Launcher = Launcher.AUTO
    metric: str = "val_bpb"
    direction: Direction = Direction.MINIMIZE
    metric_labels: tuple[str, ...] = ()
    artifact_glob: tuple[str, ...] = ("*.ptz",)
    check_paths: tuple[str, ...] = ("DATA_PATH", "TOKENIZER_PATH")
    max_system_retries: int = 2
    max_script_retries: int = 0
    files: tuple[str, ...] = ()  # support files listed beside the script (golfsweep.scriptfiles finds the rest)
    env: Mapping[str, str] = field(default_factory=dict)
    space: tuple[ParamSpec, ...] = ()
    limits: Limits = field(default_factory=Limits)
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    storage_url: str | None = None
    pruning: PruningSpec = field(default_factory=PruningSpec)
    cost: CostSpec = field(default_factory=CostSpec)
    source: Path | None = None
    explicit: frozenset[str] = frozenset()  # dotted keys the sweep file set; the rest are defaults

    @property
    def env_names(self) -> list[tuple[str, str]]:
        """(parameter name, environment variable) of every swept parameter."""
        return [(p.name, p.env) for p in self.space]

    @property
    def launcher_command(self) -> str:
        if self.launcher is Launcher.AUTO:
            return "torchrun" if self.nproc > 1 else "python"
        return self.launcher.value

    def param(self, name: str) -> ParamSpec:
        for p in self.space:
            if p.name == name:
                return p
        raise KeyError(name)

    def to_dict(self, *, mask_secrets: bool = True) -> dict[str, Any]:
        """A JSON-ready form; secret-looking env values are masked unless told otherwise."""
        d = dataclasses.asdict(self)
        d.pop("explicit")
        d["script"] = str(self.script)
        d["source"] = str(self.source) if self.source else None
        d["env"] = mask_env(self.env) if mask_secrets else dict(self.env)
        if mask_secrets and self.storage_url:
            d["storage_url"] = masked_url(self.storage_url)
        return json.loads(json.dumps(d, default=_json_default))

    def fingerprint(self) -> str:
        """Identity of what the sweep explores; a sweep directory only accepts the same fingerprint.

        Paths and trial counts are left out so a copied directory or a longer sweep still resumes.
        """
        d = self.to_dict(mask_secrets=True)
        for key in ("script", "files", "source", "trials", "storage_url", "limits", "max_system_retries",
                    "max_script_retries", "pruning", "cost"):  # how to spend, not what is explored
            d.pop(key, None)
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _json_default(o: Any) -> Any:
    if isinstance(o, Enum):
        return o.value
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


# --------------------------------------------------------------------------- loading

_SWEEP_KEYS = {
    "name", "script", "seeds", "trials", "gpus_per_run", "cpus_per_run", "nproc", "launcher", "metric",
    "direction", "metric_labels", "artifact_glob", "check_paths", "max_system_retries",
    "max_script_retries", "files",
}
_TOP_KEYS = {"sweep", "env", "space", "limits", "sampler", "storage", "pruning", "cost"}
_PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "env", "builtin"}
_LIMIT_KEYS = {f.name for f in dataclasses.fields(Limits)}
_SAMPLER_KEYS = {"name", "seed", "n_startup_trials"}
_STORAGE_KEYS = {"url"}
_METRICS = ("val_bpb", "val_loss")


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and validate a sweep file; raises ``SpecError`` listing every problem."""
    p = Path(path)
    return spec_from_dict(_read_toml(p), base_dir=p.resolve().parent, source=p.resolve())


def read_env_table(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``[env]`` table of a sweep file as strings, without validating the rest of the file."""
    p = Path(path)
    env = _read_toml(p).get("env", {})
    if not isinstance(env, dict):
        raise SpecError([f"env: must be a table, got {type(env).__name__}"], source=str(p))
    return {str(k): str(v) for k, v in env.items() if not isinstance(v, (dict, list))}


def _read_toml(p: Path) -> dict[str, Any]:
    if not p.exists():
        raise SpecError([f"sweep file: must exist, got {str(p)!r}"])
    if p.is_dir():
        raise SpecError([f"sweep file: must be a file, got directory {str(p)!r}"])
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([f"TOML syntax: {exc}"], source=str(p)) from None
    except UnicodeDecodeError as exc:
        raise SpecError([f"sweep file: must be UTF-8 text, got undecodable byte at {exc.start}"],
                        source=str(p)) from None


def spec_from_dict(data: Mapping[str, Any], base_dir: Path, source: Path | None = None) -> SweepSpec:
    """Validate an already-parsed sweep mapping; relative paths resolve against ``base_dir``."""
    v = Validator()
    v.unknown("", data, _TOP_KEYS)
    sweep = v.table(data, "sweep", required=True)
    v.unknown("sweep.", sweep, _SWEEP_KEYS)

    name = v.get(sweep, "sweep.name", str, required=True)
    if isinstance(name, str) and not _SWEEP_NAME.match(name):
        v.problem(f"sweep.name: must match {_SWEEP_NAME.pattern} (letters, digits, . _ -), got {name!r}")
    script_raw = v.get(sweep, "sweep.script", str, required=True)
    script = None
    if isinstance(script_raw, str):
        script = (base_dir / script_raw).resolve()
        if not script.exists():
            v.problem(f"sweep.script: file must exist, got {script_raw!r} (resolved {str(script)!r})")
        elif not script.is_file():
            v.problem(f"sweep.script: must be a file, got directory {script_raw!r}")

    seeds = v.get(sweep, "sweep.seeds", list, required=True)
    if isinstance(seeds, list):
        if not seeds:
            v.problem("sweep.seeds: must list at least one seed, got []")
        bad = [s for s in seeds if not is_int(s) or s < 0]
        if bad:
            v.problem(f"sweep.seeds: every seed must be a non-negative integer, got {bad[0]!r}")
        dup = sorted({s for s in seeds if seeds.count(s) > 1 and is_int(s)})
        if dup:
            v.problem(f"sweep.seeds: seeds must be distinct, got duplicate {dup[0]!r}")
    trials = v.int_at_least(sweep, "sweep.trials", 1, required=True)
    gpus = v.int_at_least(sweep, "sweep.gpus_per_run", 0, default=8)
    cpus = v.int_at_least(sweep, "sweep.cpus_per_run", 1, default=1)
    nproc_default = gpus if isinstance(gpus, int) and gpus > 0 else 1
    nproc = v.int_at_least(sweep, "sweep.nproc", 1, default=nproc_default)
    launcher = v.enum(sweep, "sweep.launcher", Launcher, Launcher.AUTO)
    metric = v.get(sweep, "sweep.metric", str, default="val_bpb")
    if isinstance(metric, str) and metric not in _METRICS:
        v.problem(f"sweep.metric: must be one of {', '.join(_METRICS)}, got {metric!r}")
    direction = v.enum(sweep, "sweep.direction", Direction, Direction.MINIMIZE)
    labels = v.str_list(sweep, "sweep.metric_labels", default=[])
    globs = v.str_list(sweep, "sweep.artifact_glob", default=["*.ptz"])
    if isinstance(globs, list) and not globs:
        v.problem("sweep.artifact_glob: must list at least one pattern, got []")
    check_paths = v.str_list(sweep, "sweep.check_paths", default=["DATA_PATH", "TOKENIZER_PATH"])
    sys_retries = v.int_at_least(sweep, "sweep.max_system_retries", 0, default=2)
    script_retries = v.int_at_least(sweep, "sweep.max_script_retries", 0, default=0)
    files = v.str_list(sweep, "sweep.files", default=[])
    for f in files if isinstance(files, list) and script is not None and script.is_file() else []:
        if problem := support_name_problem(script.parent, f, script.name):
            v.problem(f"sweep.files: {problem}")
    if launcher is Launcher.PYTHON and isinstance(nproc, int) and nproc > 1:
        v.problem(f"sweep.launcher: `python` runs one process, so nproc must be 1, got nproc={nproc}")

    env = _validate_env(v, v.table(data, "env"))
    if isinstance(check_paths, list):
        # Runs execute in their own directories, so a relative data path means "next to the sweep file".
        for key in check_paths:
            if key in env and env[key] and not os.path.isabs(env[key]):
                env[key] = str((base_dir / env[key]).resolve())
    space = _validate_space(v, v.table(data, "space"), env)
    limits = _validate_limits(v, v.table(data, "limits"))
    sampler = _validate_sampler(v, v.table(data, "sampler"), space)
    storage = v.table(data, "storage")
    v.unknown("storage.", storage, _STORAGE_KEYS)
    storage_url = v.get(storage, "storage.url", str)
    if isinstance(storage_url, str) and (problem := url_problem(storage_url)):
        v.problem(problem)
    pruning = validate_pruning(v, v.table(data, "pruning"))
    cost = validate_cost(v, v.table(data, "cost"))

    v.raise_if_any(source)
    return SweepSpec(
        name=name, script=script, seeds=tuple(int(s) for s in seeds), trials=trials,
        gpus_per_run=gpus, cpus_per_run=cpus, nproc=nproc, launcher=launcher, metric=metric,
        direction=direction, metric_labels=tuple(labels), artifact_glob=tuple(globs),
        check_paths=tuple(check_paths), max_system_retries=sys_retries,
        max_script_retries=script_retries, files=tuple(files), env=env, space=space, limits=limits, sampler=sampler,
        storage_url=storage_url, pruning=pruning, cost=cost, source=source,
        explicit=frozenset(f"{table}.{key}" for table in ("sweep", "limits", "sampler", "storage", "pruning", "cost")
                           for key in (data.get(table) or {})),
    )


def describe_spec(spec: SweepSpec) -> list[str]:
    """The resolved sweep, one ``key = value (origin)`` line each: what runs, and why."""
    def origin(key: str) -> str:
        return "sweep file" if key in spec.explicit else "default"

    d = spec.to_dict(mask_secrets=True)
    lines = [f"sweep.{k} = {d[k]!r} ({origin('sweep.' + k)})" for k in
             ("name", "script", "seeds", "trials", "gpus_per_run", "cpus_per_run", "nproc", "launcher",
              "metric", "direction", "metric_labels", "artifact_glob", "check_paths", "max_system_retries",
              "max_script_retries", "files")]
    lines += [f"env.{k} = {v!r} (sweep file)" for k, v in sorted(d["env"].items())]
    for p in spec.space:
        where = f"builtin {p.builtin!r}, overrides from sweep file" if p.builtin else "sweep file"
        if p.type is ParamType.CATEGORICAL:
            lines.append(f"space.{p.name} -> {p.env}: categorical {list(p.choices)!r} ({where})")
        else:
            scale = ", log" if p.log else ""
            step = f", step {p.step}" if p.step else ""
            lines.append(f"space.{p.name} -> {p.env}: {p.type.value} [{p.low}, {p.high}]{scale}{step} ({where})")
    lines += [f"limits.{k} = {v!r} ({origin('limits.' + k)})" for k, v in d["limits"].items()]
    lines += [f"sampler.{k} = {v!r} ({origin('sampler.' + k)})" for k, v in d["sampler"].items()]
    lines += [f"pruning.{k} = {v!r} ({origin('pruning.' + k)})" for k, v in d["pruning"].items()]
    lines += [f"cost.{k} = {v!r} ({origin('cost.' + k)})" for k, v in d["cost"].items() if v is not None]
    lines.append(f"storage.url = {d['storage_url'] or 'sqlite:///<sweep dir>/optuna.db'!r} "
                 f"({origin('storage.url')})")
    return lines


def _validate_env(v: Validator, env: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in env.items():
        if not _ENV_NAME.match(key):
            v.problem(f"env.{key}: name must be a valid environment variable ([A-Za-z_][A-Za-z0-9_]*), "
                      f"got {key!r}")
            continue
        if key in RESERVED_ENV:
            v.problem(f"env.{key}: is set by golfsweep for every run and may not be fixed, got {key!r}")
            continue
        if isinstance(value, bool):
            out[key] = "1" if value else "0"
        elif isinstance(value, (int, float, str)):
            out[key] = str(value)
        else:
            shown = SECRET_MASK if is_secret_name(key) else brief(value)  # errors are shown and logged
            v.problem(f"env.{key}: must be a string, number or boolean, got {type(value).__name__} {shown}")
    return out


def _validate_space(v: Validator, space: Mapping[str, Any], env: Mapping[str, str]) -> tuple[ParamSpec, ...]:
    params: list[ParamSpec] = []
    seen_env: dict[str, str] = {}
    for name, raw in space.items():
        key = f"space.{name}"
        if not isinstance(raw, Mapping):
            v.problem(f"{key}: must be a table like {{type = \"float\", low = .., high = ..}}, got {brief(raw)}")
            continue
        v.unknown(f"{key}.", raw, _PARAM_KEYS)
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
        if not isinstance(env_name, str) or not _ENV_NAME.match(env_name):
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


def _validate_limits(v: Validator, d: Mapping[str, Any]) -> Limits:
    v.unknown("limits.", d, _LIMIT_KEYS)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Limits):
        if f.name not in d:
            continue
        val = d[f.name]
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val) or val <= 0:
            v.problem(f"limits.{f.name}: must be a positive number, got {val!r}")
            continue
        if f.name == "artifact_bytes" and not is_int(val):
            v.problem(f"limits.artifact_bytes: must be an integer number of bytes, got {val!r}")
            continue
        values[f.name] = val
    return Limits(**values)


def _validate_sampler(v: Validator, d: Mapping[str, Any], space: tuple[ParamSpec, ...]) -> SamplerSpec:
    v.unknown("sampler.", d, _SAMPLER_KEYS)
    name = v.enum(d, "sampler.name", SamplerName, SamplerName.TPE)
    seed = v.int_at_least(d, "sampler.seed", 0, default=0)
    startup = v.int_at_least(d, "sampler.n_startup_trials", 1, default=10)
    if name is SamplerName.CMAES and any(p.type is ParamType.CATEGORICAL for p in space):
        v.problem("sampler.name: cmaes cannot search categorical parameters, got 'cmaes'")
    return SamplerSpec(name=name, seed=seed, n_startup_trials=startup)
