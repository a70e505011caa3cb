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
from golfsweep.search_spaces._space import (
    ENV_NAME,
    RESERVED_ENV,
    ParamSpec,
    ParamType,
    validate_space,
)
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

_SWEEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
    space = validate_space(v, v.table(data, "space"), env)
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
        if not ENV_NAME.match(key):
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
