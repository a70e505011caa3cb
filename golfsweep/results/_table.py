"""Per-config aggregates over seeds: mean/std BPB, limits, feasibility — as a DataFrame or text."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from golfsweep.results._stats import mean, sample_std
from golfsweep.errors import GolfsweepError
from golfsweep.limits import Limits, Outcome, check
from golfsweep.paths import SweepPaths
from golfsweep.storage import StoreLocation, recorded_location
from golfsweep.results._ledger import CostLedger, cost_ledger
from golfsweep.results._store import RunRecord, Store, TrialRecord, TrialStatus
from golfsweep.worker._types import RunState


@dataclass(frozen=True)
class SweepData:
    """Everything the tables need, read once from a sweep's store (no cluster needed): from a sweep
    directory, or from a storage server by the sweep's name (then ``paths`` is None)."""

    paths: SweepPaths | None
    spec: dict[str, Any]
    trials: list[TrialRecord]
    runs: list[RunRecord]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    location: StoreLocation | None = None  # where the store is (None: the directory's golfsweep.db)

    @property
    def where(self) -> str:
        """The sweep, for messages: its directory, or its name and server (no password)."""
        if self.paths is not None:
            return str(self.paths.root)
        return str(self.location)

    @property
    def on_server(self) -> bool:
        return self.location is not None and self.location.is_server

    @property
    def seeds(self) -> list[int]:
        return list(self.spec["seeds"])

    @property
    def limits(self) -> dict[str, Any]:
        return self.spec["limits"]

    @property
    def param_names(self) -> list[str]:
        return [p["name"] for p in self.spec["space"]]

    @property
    def minimize(self) -> bool:
        return self.spec.get("direction", "minimize") == "minimize"

    @property
    def ledger(self) -> CostLedger:
        """GPU-hours of every attempt that ended, per trial (``golfsweep.results._ledger``)."""
        cost = self.spec.get("cost") or {}
        return cost_ledger(self.attempts, int(self.spec.get("gpus_per_run", 0) or 0), cost.get("price_per_gpu_hour"))

    def open_store(self) -> Store:
        """A fresh read of the sweep's store (meta, the script, logs)."""
        return Store(self.location or StoreLocation.file(self.paths.store), create=False)  # type: ignore[union-attr]

    def log(self, trial: int, seed: int) -> tuple[bytes | None, str]:
        """A run's last log (None if there is none) and where it was looked for: on a server, its
        store; else the sweep directory's ``runs/<trial>-<seed>/train.log``."""
        if self.on_server:
            with self.open_store() as store:
                return store.log(trial, seed), f"run {SweepPaths.run_name(trial, seed)} in {self.location}"
        path = self.paths.run_log(trial, seed)  # type: ignore[union-attr]
        return (path.read_bytes() if path.is_file() else None), repr(str(path))


def load_sweep(sweep: str | Path | StoreLocation) -> SweepData:
    """Read a sweep: from its directory (``sweep_dir``; its store may be on a server, as its spec.json
    says) or from a ``StoreLocation`` (a server and the sweep's name: no directory needed)."""
    paths = None
    if isinstance(sweep, StoreLocation):
        location = sweep
    else:
        paths = SweepPaths.of(sweep)
        if not paths.root.is_dir():
            raise GolfsweepError(f"sweep directory: must exist, got {str(sweep)!r}")
        location = recorded_location(paths)
    with Store(location, create=False) as store:
        raw = store.get_meta("spec")
        if raw is None:
            where = str(sweep) if paths is not None else str(location)
            raise GolfsweepError(f"sweep directory: store has no sweep spec, got {where!r}")
        return SweepData(paths=paths, spec=json.loads(raw), trials=store.trials(), runs=store.runs(),
                         attempts=store.attempts(), location=location)


LIMIT_COLUMNS = {"artifact_bytes": "bytes_ok", "train_seconds": "train_ok", "eval_seconds": "eval_ok"}


def limit_checks(data: SweepData, runs: Sequence[RunRecord]) -> dict[str, str]:
    """Each limit's outcome over a config's runs (``pass``/``fail``/``unproven``: ``golfsweep.limits``)."""
    return {LIMIT_COLUMNS[c.rule]: c.outcome.value for c in check(Limits.from_dict(data.limits), runs)}


def runs_frame(data: SweepData) -> pd.DataFrame:
    """One row per (trial, seed) run, with the trial's params."""
    params = {t.trial: t.params for t in data.trials}
    rows = []
    for r in data.runs:
        d = r.to_dict()
        d.pop("log_tail")
        d.pop("curve")
        d["params"] = params.get(r.trial, {})
        rows.append(d)
    return pd.DataFrame(rows)


def summary_frame(data: SweepData) -> pd.DataFrame:
    """One row per config, best first: feasible configs by mean metric, then the rest."""
    by_trial: dict[int, list[RunRecord]] = {}
    for r in data.runs:
        by_trial.setdefault(r.trial, []).append(r)
    metric = data.spec.get("metric", "val_bpb")
    ledger = data.ledger
    rows = []
    for t in data.trials:
        runs = by_trial.get(t.trial, [])
        pruned = t.state is TrialStatus.PRUNED
        had = [r for r in runs if r.state is RunState.COMPLETE and r.val_bpb is not None]
        ok = [] if pruned else had  # a pruned trial's seeds are listed apart, never averaged
        bpb = [r.val_bpb for r in ok]
        loss = [r.val_loss for r in ok if r.val_loss is not None]
        checks = limit_checks(data, runs)
        n_seeds = len(data.seeds)
        all_done = len(ok) == n_seeds
        failed = [f"seed {r.seed}: {r.state.value}: {r.reason}" for r in runs
                  if r.state.is_finished() and r.state not in (RunState.COMPLETE, RunState.PRUNED)]
        row = {
            "trial": t.trial,
            "params": t.params,
            **{f"param.{k}": v for k, v in t.params.items()},
            "n_ok": len(ok),
            "n_seeds": n_seeds,
            "mean_val_bpb": mean(bpb),
            "std_val_bpb": sample_std(bpb),
            "min_val_bpb": min(bpb) if bpb else None,
            "max_val_bpb": max(bpb) if bpb else None,
            "mean_val_loss": mean(loss),
            "std_val_loss": sample_std(loss),
            "max_bytes_total": max((r.bytes_total for r in ok if r.bytes_total is not None), default=None),
            "max_train_s": _max_s([r.train_time_ms for r in ok]),
            "max_eval_s": _max_s([r.eval_time_ms for r in ok]),
            **checks,
            "feasible": all_done and not pruned and all(v == Outcome.PASS.value for v in checks.values()),
            "state": t.state.value,
            "pruned": pruned,
            "pruned_values": {r.seed: r.val_bpb for r in had} if pruned else {},
            "pruned_reason": next((r.reason for r in runs if r.state is RunState.PRUNED), None) if pruned else None,
            "gpu_hours": ledger.per_trial.get(t.trial, 0.0),
            "failed": failed,
        }
        row["objective"] = row["mean_val_bpb"] if metric == "val_bpb" else row["mean_val_loss"]
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    sign = 1 if data.minimize else -1
    df["_key"] = [sign * v if v is not None and not _isnan(v) else math.inf for v in df["objective"]]
    df = df.sort_values(by=["feasible", "pruned", "n_ok", "_key", "trial"],
                        ascending=[False, True, False, True, True], kind="stable")
    return df.drop(columns=["_key"]).reset_index(drop=True)


def best_feasible(data: SweepData) -> dict[str, Any] | None:
    df = summary_frame(data)
    if df.empty:
        return None
    feasible = df[df["feasible"]]
    return None if feasible.empty else feasible.iloc[0].to_dict()


def format_table(data: SweepData, fmt: str) -> str:
    """Render the summary as ``md``, ``csv`` or ``json``."""
    df = summary_frame(data)
    if fmt == "json":
        cols = ["trial", "params", "n_ok", "n_seeds", "mean_val_bpb", "std_val_bpb", "min_val_bpb",
                "max_val_bpb", "mean_val_loss", "std_val_loss", "max_bytes_total", "max_train_s", "max_eval_s",
                "bytes_ok", "train_ok", "eval_ok", "feasible", "state", "pruned", "gpu_hours", "failed"]
        ledger = data.ledger
        records = [] if df.empty else [{c: _jsonable(row[c]) for c in cols} for _, row in df.iterrows()]
        if ledger.price_per_gpu_hour is not None:
            for rec in records:
                rec["cost"] = ledger.money(rec["gpu_hours"])
        return json.dumps(records, indent=2)
    if df.empty:
        return "" if fmt == "csv" else "(no trials yet)"
    flat = _flat(data, df)
    if fmt == "csv":  # the total as a last row: trial "total", its GPU-hours (and cost)
        total = {c: None for c in flat.columns}
        total.update({"trial": "total", "gpu_hours": round(data.ledger.total, 3)})
        if "cost" in flat.columns:
            total["cost"] = round(data.ledger.money(data.ledger.total), 2)
        return pd.concat([flat, pd.DataFrame([total])], ignore_index=True).to_csv(index=False)
    if fmt == "md":
        return _markdown(flat) + "\n\n" + ledger_line(data)
    raise GolfsweepError(f"--format: must be one of md, csv, json, got {fmt!r}")


def _flat(data: SweepData, df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["trial"] = df["trial"]
    for name in data.param_names:
        col = f"param.{name}"
        out[name] = df[col] if col in df else None
    out["n_ok/n_seeds"] = [f"{a}/{b}" for a, b in zip(df["n_ok"], df["n_seeds"])]
    for col in ("mean_val_bpb", "std_val_bpb", "min_val_bpb", "max_val_bpb", "mean_val_loss"):
        out[col] = df[col]
    out["max_bytes_total"] = df["max_bytes_total"]
    out["max_train_s"] = df["max_train_s"]
    out["max_eval_s"] = df["max_eval_s"]
    for col in ("bytes_ok", "train_ok", "eval_ok"):
        out[col] = [_passfail(v) for v in df[col]]
    out["feasible"] = ["pruned" if p else "yes" if v else "no" for v, p in zip(df["feasible"], df["pruned"])]
    out["gpu_hours"] = [round(float(h), 3) for h in df["gpu_hours"]]
    ledger = data.ledger
    if ledger.price_per_gpu_hour is not None:
        out["cost"] = [round(ledger.money(float(h)), 2) for h in df["gpu_hours"]]
    out["failed"] = ["; ".join(f) for f in df["failed"]]
    return out


def ledger_line(data: SweepData) -> str:
    """The sweep's total: GPU-hours (and money), trials pruned."""
    ledger = data.ledger
    money = f" (${ledger.money(ledger.total):,.2f} at ${ledger.price_per_gpu_hour:g}/GPU-hour)" \
        if ledger.price_per_gpu_hour is not None else ""
    pruned = sum(t.state is TrialStatus.PRUNED for t in data.trials)
    budget = (data.spec.get("cost") or {}).get("budget_gpu_hours")
    of = f" of a {budget:g} GPU-hour budget" if budget else ""
    return (f"total: {ledger.total:.2f} GPU-hours{of}{money} over {len(data.attempts)} attempts "
            f"({ledger.gpus_per_run} GPUs each); {pruned} trial(s) pruned")


def _markdown(flat: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:.6g}" if abs(v) < 1e-3 else f"{v:.4f}" if abs(v) < 1e3 else f"{v:.1f}"
        return str(v).replace("|", "\\|")

    header = list(flat.columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for _, row in flat.iterrows():
        lines.append("| " + " | ".join(cell(row[c]) for c in header) + " |")
    return "\n".join(lines)


def _passfail(v: str) -> str:
    return "FAIL" if v == Outcome.FAIL.value else str(v)




def _max_s(ms: Sequence[int | None]) -> float | None:
    known = [m for m in ms if m is not None]
    return max(known) / 1000 if known else None


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _jsonable(v: Any) -> Any:
    if v is None or _isnan(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v
