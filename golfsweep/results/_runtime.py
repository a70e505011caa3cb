"""Runtime rules (artifact bytes, train/eval seconds, every seed reported) for one config of a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from golfsweep.errors import GolfsweepError
from golfsweep.storage import StoreLocation
from golfsweep.limits import Limits, check
from golfsweep.worker import config_env
from golfsweep.results._table import SweepData, load_sweep, summary_frame


def pick_trial(data: SweepData, trial: int | None) -> int:
    """``trial`` when the sweep has it; by default the best feasible config, else the best one."""
    known = sorted(t.trial for t in data.trials)
    if not known:
        raise GolfsweepError(f"--trial: sweep {data.where!r} has no trials yet, got "
                             f"{'none' if trial is None else trial}")
    if trial is None:
        df = summary_frame(data)
        feasible = df[df["feasible"]]
        return int((feasible if not feasible.empty else df).iloc[0]["trial"])
    if trial not in known:
        raise GolfsweepError(f"--trial: must be one of this sweep's trials ({_ranges(known)}), got {trial}")
    return trial


def record_limits(data: SweepData) -> Limits:
    """The stricter of the sweep's limits and the challenge's: a records folder obeys the challenge."""
    return Limits.from_dict(data.limits).stricter(Limits())


def runtime_checks(data: SweepData, trial: int) -> list[Any]:
    """``golfsweep.limits.check`` of one config's runs against :func:`record_limits`, every seed included."""
    return check(record_limits(data), [r for r in data.runs if r.trial == trial], seeds=data.seeds)


def runtime_checks_for(sweep_dir: str | Path | StoreLocation, trial: int | None = None) -> dict[str, Any]:
    """The runtime checks of one trial (default: best feasible, else best) as a JSON-ready dict."""
    data = load_sweep(sweep_dir)
    t = pick_trial(data, trial)
    params = next(tr.params for tr in data.trials if tr.trial == t)
    checks = [c.to_dict() for c in runtime_checks(data, t)]
    return {
        "sweep": data.where,
        "trial": t,
        "params": params,
        "limits": _checked(record_limits(data)),
        "ok": all(c["ok"] for c in checks),
        "checks": checks,
    }


def _checked(limits: Limits) -> dict[str, float]:
    return {"artifact_bytes": limits.artifact_bytes, "train_seconds": limits.train_seconds,
            "eval_seconds": limits.eval_seconds}


def trial_env(data: SweepData, trial: int) -> dict[str, str]:
    """The environment a trial's runs received from the sweep (secrets masked), without the per-run
    ``SEED``/``RUN_ID``: as the driver stored it, or for an older store rebuilt from the spec."""
    t = next(t for t in data.trials if t.trial == trial)
    if t.env is not None:
        return dict(t.env)
    env = {str(k): str(v) for k, v in sorted(data.spec.get("env", {}).items())}
    env.update(config_env([(p["name"], p["env"]) for p in data.spec["space"]], t.params))
    return env


def sweep_configs(sweep_dir: str | Path | StoreLocation, trial: int | None = None) -> dict[int, dict[str, str]]:
    """Each trial's environment (or only ``trial``'s), for auditing a script as the sweep ran it."""
    data = load_sweep(sweep_dir)
    if trial is not None:
        pick_trial(data, trial)  # a trial the sweep does not have is a one-line error
    trials = [t for t in data.trials if trial is None or t.trial == trial]
    if not trials:
        raise GolfsweepError(f"--sweep: sweep {data.where!r} has no trials yet, got none")
    return {t.trial: trial_env(data, t.trial) for t in sorted(trials, key=lambda t: t.trial)}


def _ranges(xs: list[int]) -> str:
    out, start = [], xs[0]
    for a, b in zip(xs, xs[1:] + [None]):
        if b != a + 1:
            out.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ", ".join(out)
