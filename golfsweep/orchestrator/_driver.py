"""The sweep driver: Optuna ask/tell over (config × seed) runs on a ``RunBackend``.

A trial is one config; it is told to Optuna only when every seed has finished, with the mean
over seeds when all completed, as FAIL when any seed failed (failures are never averaged away).
The store is written before Optuna is told, so a driver killed at any point resumes from the
store: completed runs are kept, runs that were in flight are run again. One driver runs a sweep
at a time (``_lease``); SIGTERM/SIGINT stop it cleanly (``_events``).

Secrets: workers redact a run's output before it is written (``golfsweep.redact``); the driver
redacts each result again, with the sweep env and its own environment, before anything of it
reaches the sweep directory (train.log, result.json, the store, Optuna, driver.log).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from golfsweep.limits import check as limits_check
from golfsweep.orchestrator._backend import RunBackend
from golfsweep.orchestrator._events import DriverInterrupted, DriverLog, as_interrupt, interrupt_on_signals
from golfsweep.orchestrator._lease import SweepLease
from golfsweep.orchestrator._setup import (check_sweep_dir, open_study, prepare_sweep_dir, quiet_optuna,
                                          trial_environment)
from golfsweep.paths import SweepPaths, atomic_write
from golfsweep.redact import MIN_SECRET_LENGTH, Redactor
from golfsweep.results import RunRecord, TrialStatus, load_sweep, summary_frame
from golfsweep.search_spaces import SweepSpec, describe_spec, distributions, mask_env
from golfsweep.worker import LaunchMode, RunResult, RunSpec, RunState


@dataclass(frozen=True)
class Snapshot:
    """Progress counts for the live display."""

    total: int
    complete: int
    failed: int
    running: int
    queued: int
    retries: int
    best: dict[str, Any] | None
    elapsed: float


ProgressCallback = Callable[[Snapshot], None]


@dataclass(frozen=True)
class SweepOutcome:
    sweep_dir: Path
    n_trials: int
    n_runs: int
    n_failed: int
    best: dict[str, Any] | None


class Driver:
    """One sweep, driven to completion on a backend. Use ``run()``."""

    def __init__(self, spec: SweepSpec, sweep_dir: str | Path, backend: RunBackend, *,
                 progress: ProgressCallback | None = None, poll_seconds: float = 0.5,
                 checked: tuple[bytes, str] | None = None,
                 opened: tuple[optuna.Study, optuna.storages.BaseStorage] | None = None) -> None:
        """``checked``/``opened``: what ``check_sweep_dir``/``open_study`` returned when the caller
        already ran them (the CLI does, before Ray starts), so nothing is checked twice."""
        self.spec = spec
        self.paths = SweepPaths.of(sweep_dir)
        self.backend = backend
        self.progress = progress
        self.poll_seconds = poll_seconds
        self.redactor = Redactor({**os.environ, **spec.env})
        checked = checked or check_sweep_dir(spec, self.paths)
        with quiet_optuna():  # before writing anything: the storage may be bad
            self.study, self.storage = opened or open_study(spec, self.paths)
        self.lease = SweepLease(self.paths.store, self.paths.root)
        taken_over = self.lease.acquire()  # before anything is written or runs
        try:
            self.store = prepare_sweep_dir(spec, self.paths, *checked)
        except BaseException:
            self.lease.release()
            raise
        self.script_bytes, self.script_sha = checked
        self.events = DriverLog(self.paths.driver_log, self.redactor)
        if taken_over:
            self.events.notice("lease_taken_over", taken_over)
        self.dists = distributions(spec)
        self.pending: deque[RunSpec] = deque()
        self.retries = 0
        self.started = time.time()
        self._trials: dict[int, optuna.trial.Trial] = {}
        self._last_report = 0.0

    # ------------------------------------------------------------------ main loop
    def run(self) -> SweepOutcome:
        """Drive the sweep to its end. SIGTERM/SIGINT raise ``DriverInterrupted`` after the runs in
        flight were killed (they stay RUNNING in the store, so ``resume`` re-runs them)."""
        try:
            with quiet_optuna(), interrupt_on_signals():
                self._start()
                self._loop()
            self._report()
            runs = self.store.runs()
            outcome = SweepOutcome(self.paths.root, len(self.store.trials()), len(runs),
                                   sum(r.state is not RunState.COMPLETE for r in runs), self._best())
            self.events.event("driver_done", runs=outcome.n_runs, not_complete=outcome.n_failed)
            return outcome
        except KeyboardInterrupt as exc:
            stop = as_interrupt(exc)
            self.events.event("driver_interrupted", signal=stop.signal_name, in_flight=self.backend.in_flight())
            raise stop from None
        finally:
            self.backend.shutdown()  # kills what still runs, with its process tree
            self.store.close()
            self.lease.release()
            self.events.close()

    def _start(self) -> None:
        s = self.spec
        self.events.event("driver_start", sweep=s.name, trials=s.trials, seeds=len(s.seeds),
                          script_sha256=self.script_sha[:12], pid=os.getpid())
        for line in describe_spec(s):
            self.events.event("spec", line=line)
        for name in Redactor(s.env).short_names:
            self.events.event("short_secret", key=f"env.{name}", min_length=MIN_SECRET_LENGTH,
                              note="masked only where it follows its name")
        self._recover()

    def _loop(self) -> None:
        while True:
            if self.lease.lost.is_set():
                raise DriverInterrupted("lease lost: another driver took over this sweep")
            submitted = self._fill()
            if not self.pending and self.backend.in_flight() == 0 and not self._can_ask():
                return
            results = self.backend.poll(self.poll_seconds)
            for run, result in results:
                self._handle(run, result)
            # The display reads the store: refresh on change, and now and then for the clock.
            if submitted or results or time.time() - self._last_report > 5:
                self._report()

    def _can_ask(self) -> bool:
        return len(self.study.trials) < self.spec.trials

    def _fill(self) -> int:
        """Submit runs while the cluster has room; returns how many were submitted."""
        cap = self.backend.capacity()
        submitted = 0
        while self.backend.in_flight() < cap:
            if not self.pending:
                if not self._can_ask():
                    break
                self._ask()
            self._submit(self.pending.popleft())
            submitted += 1
        return submitted

    def _ask(self) -> None:
        trial = self.study.ask(self.dists)
        self._trials[trial.number] = trial
        self.store.add_trial(trial.number, trial.params, mask_env(trial_environment(self.spec, trial.params)))
        self.events.event("trial_asked", trial=trial.number, params=trial.params)
        for seed in self.spec.seeds:
            self.pending.append(self._run_spec(trial.number, trial.params, seed, attempt=1))

    def _run_spec(self, trial: int, params: dict[str, Any], seed: int, attempt: int) -> RunSpec:
        s = self.spec
        return RunSpec(
            sweep=s.name, trial=trial, seed=seed, params=dict(params), env=trial_environment(s, params),
            script_name=s.script.name, script_bytes=self.script_bytes, script_sha256=self.script_sha, nproc=s.nproc,
            launcher=LaunchMode(s.launcher_command), attempt=attempt,
            limits=s.limits,
            metric_labels=s.metric_labels, artifact_glob=s.artifact_glob, check_paths=s.check_paths,
        )

    def _submit(self, run: RunSpec) -> None:
        self.store.put_run(RunRecord(trial=run.trial, seed=run.seed, state=RunState.RUNNING, attempt=run.attempt,
                                     started_at=time.time()))
        self.backend.submit(run)
        self.events.event("run_submitted", trial=run.trial, seed=run.seed, attempt=run.attempt)

    # ------------------------------------------------------------------ results
    def _handle(self, run: RunSpec, res: RunResult) -> None:
        res = res.redacted(self.redactor)  # the worker redacted already; older or foreign workers may not
        log_path = None
        if res.log_text:
            log_path = self.paths.run_log(run.trial, run.seed)
            atomic_write(log_path, res.log_text)
        rec = RunRecord.from_result(res, str(log_path) if log_path else None)
        retry = self._retry(res.state, run.attempt)
        self.store.put_run(rec)
        atomic_write(self.paths.run_result(run.trial, run.seed), json.dumps(rec.to_dict(), indent=2))
        self.events.event("run_finished", trial=run.trial, seed=run.seed, attempt=run.attempt,
                          state=res.state.value, node=res.node_id, reason=res.reason, retry=retry,
                          val_bpb=res.val_bpb, warnings=len(res.warnings) or None)
        if retry:
            self.retries += 1
            self.pending.appendleft(_next_attempt(run))
            return
        self._maybe_tell(run.trial)

    def _retry(self, state: RunState, attempt: int) -> bool:
        """Whether a run that ended in ``state`` on ``attempt`` runs again: the one rule for the live
        loop and for resume. A lost node is retried up to ``max_system_retries`` times, a script
        failure up to ``max_script_retries``; a completed run never."""
        if state.is_system_failure():
            return attempt <= self.spec.max_system_retries
        if state.is_script_failure():
            return attempt <= self.spec.max_script_retries
        return False

    def _maybe_tell(self, trial_number: int) -> None:
        runs = self.store.runs(trial_number)
        if len(runs) < len(self.spec.seeds) or not all(r.state.is_finished() for r in runs):
            return
        trial = self._trial(trial_number)
        failed = [r for r in runs if r.state is not RunState.COMPLETE]
        if failed:
            reasons = "; ".join(f"seed {r.seed}: {r.state.value}: {r.reason}" for r in failed)
            trial.set_user_attr("failure", reasons[:2000])
            self.store.finish_trial(trial_number, TrialStatus.FAILED, None)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.events.event("trial_failed", trial=trial_number, reasons=reasons)
            return
        metric = self.spec.metric
        values = [getattr(r, metric) for r in runs]
        value = sum(values) / len(values)
        for c in limits_check(self.spec.limits, runs):  # unproven limits count as infeasible
            trial.set_constraint(c.rule, c.excess())
        trial.set_user_attr("seeds", {str(r.seed): getattr(r, metric) for r in runs})
        self.store.finish_trial(trial_number, TrialStatus.COMPLETE, value)
        self.study.tell(trial, value)
        self.events.event("trial_complete", trial=trial_number, metric=metric, mean=round(value, 8))

    def _trial(self, number: int) -> optuna.trial.Trial:
        if number not in self._trials:  # after a restart: find the trial through the storage's API
            study_id = self.storage.get_study_id_from_name(self.spec.name)
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)
            self._trials[number] = optuna.trial.Trial(self.study, trial_id)
        return self._trials[number]

    # ------------------------------------------------------------------ resume
    def _recover(self) -> None:
        """Re-queue what a previous driver left unfinished; tell trials whose runs all finished."""
        known = {t.trial for t in self.store.trials()}
        for ft in self.study.trials:
            if ft.state is optuna.trial.TrialState.RUNNING and ft.number not in known:
                self.store.add_trial(ft.number, ft.params, mask_env(trial_environment(self.spec, ft.params)))
        for t in self.store.trials():
            ft = self.study.trials[t.trial]
            if ft.state is not optuna.trial.TrialState.RUNNING:
                continue
            requeued = 0
            for seed in self.spec.seeds:
                rec = self.store.run(t.trial, seed)
                if rec is not None and rec.state.is_finished() and not self._retry(rec.state, rec.attempt):
                    continue
                attempt = rec.attempt + 1 if rec is not None else 1
                self.pending.append(self._run_spec(t.trial, t.params, seed, attempt))
                requeued += 1
            if requeued:
                self.events.event("resume_requeued", trial=t.trial, runs=requeued)
            else:
                self._maybe_tell(t.trial)

    # ------------------------------------------------------------------ progress
    def _best(self) -> dict[str, Any] | None:
        df = summary_frame(load_sweep(self.paths.root))
        if df.empty or not df["feasible"].any():
            return None
        row = df[df["feasible"]].iloc[0]
        return {"trial": int(row["trial"]), "params": row["params"], "objective": float(row["objective"]),
                "std": None if row["std_val_bpb"] is None or _nan(row["std_val_bpb"]) else float(row["std_val_bpb"])}

    def _report(self) -> None:
        self._last_report = time.time()
        if self.progress is None:
            return
        runs = self.store.runs()
        complete = sum(r.state is RunState.COMPLETE for r in runs)
        failed = sum(r.state.is_finished() and r.state is not RunState.COMPLETE for r in runs)
        total = self.spec.trials * len(self.spec.seeds)
        running = self.backend.in_flight()
        queued = max(0, total - complete - failed - running)
        self.progress(Snapshot(total=total, complete=complete, failed=failed, running=running, queued=queued,
                               retries=self.retries, best=self._best(), elapsed=time.time() - self.started))


def _next_attempt(run: RunSpec) -> RunSpec:
    return dataclasses.replace(run, attempt=run.attempt + 1)


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)
