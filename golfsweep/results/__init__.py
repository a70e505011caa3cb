"""The run store and everything computed from it; works on a copied sweep directory, or on a sweep's
store on a PostgreSQL server from any machine, no cluster."""

from golfsweep.results._export import export_record
from golfsweep.results._report import render_report, write_report
from golfsweep.results._baseline import Baseline, BaselineRun, load_baseline
from golfsweep.results._significance import Significance, format_significance, significance, significance_of
from golfsweep.results._runtime import pick_trial, runtime_checks, runtime_checks_for, sweep_configs, trial_env
from golfsweep.results._status import format_status
from golfsweep.results._store import LeaseHeld, RunRecord, Store, TrialRecord, TrialStatus
from golfsweep.results._table import (
    SweepData,
    best_feasible,
    format_table,
    limit_checks,
    load_sweep,
    runs_frame,
    summary_frame,
)

__all__ = [
    "LeaseHeld", "RunRecord", "Store", "SweepData", "TrialRecord", "TrialStatus", "best_feasible", "format_status",
    "format_table", "limit_checks", "load_sweep", "runs_frame", "summary_frame",
    "Baseline", "BaselineRun", "Significance", "format_significance", "load_baseline", "significance",
    "significance_of", "render_report", "write_report", "export_record", "pick_trial", "runtime_checks",
    "runtime_checks_for",
    "sweep_configs",
    "trial_env",
]
